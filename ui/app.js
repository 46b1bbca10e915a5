/* global window, document, history */
import { render } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { html } from './html.js'
import { allows, api, session } from './api.js'
import { Me } from './role.js'
import { AgentsPage } from './agents.js'
import { TransfersPage } from './transfers.js'
import { TransferPage } from './transfer.js'
import { SubmitPage } from './submit.js'
import { ThroughputPage } from './throughput.js'
import { TokensPage } from './tokens.js'

function route () {
  const hash = window.location.hash.replace(/^#/, '') || '/transfers'
  const transfer = /^\/transfers\/(tr_[0-9A-Z]+)$/.exec(hash)
  if (transfer !== null) return { page: 'transfer', id: transfer[1] }
  if (hash === '/agents') return { page: 'agents' }
  if (hash === '/submit') return { page: 'submit' }
  if (hash === '/throughput') return { page: 'throughput' }
  if (hash === '/tokens') return { page: 'tokens' }
  return { page: 'transfers' }
}

/**
 * `npm start` prints the dashboard's URL with the token in the fragment
 * (#token=…), which never reaches a server: it is kept for the tab like a
 * typed one and taken out of the address bar and the history at once.
 */
function tokenFromUrl () {
  const m = /^#token=([^&]+)$/.exec(window.location.hash)
  if (m === null) return
  session.signIn(decodeURIComponent(m[1]))
  history.replaceState(null, '', `${window.location.pathname}#/transfers`)
}
tokenFromUrl()

function SignIn ({ onSignedIn, reason }) {
  const [token, setToken] = useState('')
  const [error, setError] = useState(reason)
  const [busy, setBusy] = useState(false)
  const submit = async e => {
    e.preventDefault()
    setBusy(true)
    try {
      // Any valid token may list transfers (a reader's sees its tenant's): that checks the token before keeping it.
      await api('GET', '/v1/transfers?limit=1', undefined, token.trim())
      session.signIn(token.trim())
      onSignedIn()
    } catch (err) {
      setError(err.message)
    } finally {
      setBusy(false)
    }
  }
  return html`
    <main class="signin">
      <h1>Staccato</h1>
      <form onSubmit=${submit}>
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="off" required value=${token} onInput=${e => setToken(e.currentTarget.value)} />
        <button type="submit" disabled=${busy}>Sign in</button>
        ${error !== undefined && html`<p class="error" role="alert">${error}</p>`}
        <p class="hint">The token is kept in this tab only (session storage). <code>npm start</code> prints one; <code>staccato token create</code> makes more.</p>
      </form>
    </main>`
}

// The hash is the route here, so the skip link moves the focus itself rather than follow #main.
function skip (e) {
  e.preventDefault()
  document.getElementById('main')?.focus()
}

function Nav ({ current, onSignOut, me }) {
  const link = (page, href, label) => html`<a href=${href} aria-current=${current === page ? 'page' : undefined}>${label}</a>`
  return html`
    <header>
      <a class="skip" href="#main" onClick=${skip}>Skip to content</a>
      <nav aria-label="Main">
        <span class="brand">Staccato</span>
        ${link('transfers', '#/transfers', 'Transfers')}
        ${link('agents', '#/agents', 'Agents')}
        ${allows(me.role, 'operator') && link('submit', '#/submit', 'New transfer')}
        ${allows(me.role, 'admin') && link('throughput', '#/throughput', 'Throughput')}
        ${allows(me.role, 'admin') && link('tokens', '#/tokens', 'Tokens')}
        <span class="spacer"></span>
        <span class="whoami" data-role=${me.role}>${me.role}${me.tenant !== '' ? ` · ${me.tenant}` : ''}</span>
        <a href="/docs">API</a>
        <button type="button" class="link" onClick=${onSignOut}>Sign out</button>
      </nav>
    </header>`
}

function App () {
  const [signedIn, setSignedIn] = useState(session.token() !== null)
  const [reason, setReason] = useState()
  const [where, setWhere] = useState(route())
  const [me, setMe] = useState()
  useEffect(() => {
    if (!signedIn) { setMe(undefined); return }
    api('GET', '/v1/whoami').then(setMe, () => {})
  }, [signedIn])
  useEffect(() => {
    const onHash = () => setWhere(route())
    const onUnauthorized = e => { session.signOut(); setReason(e.detail); setSignedIn(false) }
    window.addEventListener('hashchange', onHash)
    window.addEventListener('staccato:unauthorized', onUnauthorized)
    return () => {
      window.removeEventListener('hashchange', onHash)
      window.removeEventListener('staccato:unauthorized', onUnauthorized)
    }
  }, [])
  if (!signedIn) return html`<${SignIn} reason=${reason} onSignedIn=${() => { setReason(undefined); setSignedIn(true) }} />`
  const signOut = () => { session.signOut(); setReason(undefined); setSignedIn(false) }
  // The role first: a page drawn before it would show a reader buttons it may not use.
  if (me === undefined) return html`<main id="main"><p>Loading…</p></main>`
  let page
  if (where.page === 'agents') page = html`<${AgentsPage} />`
  else if (where.page === 'submit') page = html`<${SubmitPage} />`
  else if (where.page === 'throughput') page = html`<${ThroughputPage} />`
  else if (where.page === 'tokens') page = html`<${TokensPage} />`
  else if (where.page === 'transfer') page = html`<${TransferPage} key=${where.id} id=${where.id} />`
  else page = html`<${TransfersPage} />`
  return html`<${Me.Provider} value=${me}><${Nav} current=${where.page} onSignOut=${signOut} me=${me} /><main id="main" tabindex="-1">${page}</main></${Me.Provider}>`
}

render(html`<${App} />`, document.getElementById('app'))
