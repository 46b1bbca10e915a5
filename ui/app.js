/* global window, document */
import { render } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { html } from './html.js'
import { api, session } from './api.js'
import { AgentsPage } from './agents.js'
import { TransfersPage } from './transfers.js'
import { TransferPage } from './transfer.js'
import { SubmitPage } from './submit.js'

function route () {
  const hash = window.location.hash.replace(/^#/, '') || '/transfers'
  const transfer = /^\/transfers\/(tr_[0-9A-Z]+)$/.exec(hash)
  if (transfer !== null) return { page: 'transfer', id: transfer[1] }
  if (hash === '/agents') return { page: 'agents' }
  if (hash === '/submit') return { page: 'submit' }
  return { page: 'transfers' }
}

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

function Nav ({ current, onSignOut }) {
  const link = (page, href, label) => html`<a href=${href} aria-current=${current === page ? 'page' : undefined}>${label}</a>`
  return html`
    <header>
      <a class="skip" href="#main" onClick=${skip}>Skip to content</a>
      <nav aria-label="Main">
        <span class="brand">Staccato</span>
        ${link('transfers', '#/transfers', 'Transfers')}
        ${link('agents', '#/agents', 'Agents')}
        ${link('submit', '#/submit', 'New transfer')}
        <span class="spacer"></span>
        <a href="/docs">API</a>
        <button type="button" class="link" onClick=${onSignOut}>Sign out</button>
      </nav>
    </header>`
}

function App () {
  const [signedIn, setSignedIn] = useState(session.token() !== null)
  const [reason, setReason] = useState()
  const [where, setWhere] = useState(route())
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
  let page
  if (where.page === 'agents') page = html`<${AgentsPage} />`
  else if (where.page === 'submit') page = html`<${SubmitPage} />`
  else if (where.page === 'transfer') page = html`<${TransferPage} key=${where.id} id=${where.id} />`
  else page = html`<${TransfersPage} />`
  return html`<${Nav} current=${where.page} onSignOut=${signOut} /><main id="main" tabindex="-1">${page}</main>`
}

render(html`<${App} />`, document.getElementById('app'))
