import { useEffect, useState } from 'preact/hooks'
import { html } from './html.js'
import { api } from './api.js'

/** An admin's tokens: create one (its secret shown once), revoke one. */
export function TokensPage () {
  const [tokens, setTokens] = useState()
  const [error, setError] = useState()
  const [created, setCreated] = useState()
  const [form, setForm] = useState({ role: 'reader', tenant: 'default', name: '' })

  const load = async () => {
    try {
      setTokens((await api('GET', '/v1/tokens')).items)
    } catch (err) {
      setError(err.message)
    }
  }
  useEffect(() => { void load() }, [])

  const create = async e => {
    e.preventDefault()
    try {
      const body = { role: form.role, tenant: form.tenant.trim(), ...(form.name.trim() !== '' ? { name: form.name.trim() } : {}) }
      setCreated(await api('POST', '/v1/tokens', body))
      setError(undefined)
      await load()
    } catch (err) {
      setError(`${err.message} (${err.code})`)
    }
  }
  const revoke = id => async () => {
    try {
      await api('DELETE', `/v1/tokens/${id}`)
      await load()
    } catch (err) {
      setError(`${err.message} (${err.code})`)
    }
  }
  const set = key => e => { const v = e.currentTarget.value; setForm(f => ({ ...f, [key]: v })) }
  return html`
    <h1>Tokens</h1>
    ${error !== undefined && html`<p class="error" role="alert">${error}</p>`}
    <form class="token-form" onSubmit=${create} aria-label="Create a token">
      <label>Role
        <select name="role" value=${form.role} onChange=${set('role')}>
          <option value="reader">reader</option><option value="operator">operator</option><option value="admin">admin</option>
        </select>
      </label>
      <label>Tenant <input name="tenant" required value=${form.tenant} onInput=${set('tenant')} /></label>
      <label>Name <input name="name" value=${form.name} onInput=${set('name')} /></label>
      <button type="submit">Create token</button>
    </form>
    ${created !== undefined && html`
      <p class="secret" role="status">Token <code>${created.id}</code> created. Copy its secret now; it is not shown again:
        <output id="new-token"><code>${created.token}</code></output></p>`}
    ${tokens === undefined
      ? html`<p>Loading…</p>`
      : html`
      <div class="table-wrap">
        <table class="tokens">
          <thead><tr><th scope="col">Id</th><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Tenant</th><th scope="col">Source</th><th scope="col">Created</th><th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>${tokens.map(t => html`
            <tr key=${t.id} data-token=${t.id}>
              <th scope="row"><code>${t.id}</code></th>
              <td>${t.name ?? ''}</td>
              <td>${t.role}</td>
              <td>${t.tenant}</td>
              <td>${t.source}</td>
              <td><time datetime=${t.createdAt}>${new Date(t.createdAt).toLocaleString()}</time></td>
              <td data-token-state>${t.revokedAt !== undefined ? 'revoked' : 'valid'}</td>
              <td>${t.revokedAt === undefined && t.source !== 'config' && html`<button type="button" class="small" onClick=${revoke(t.id)} aria-label=${`Revoke ${t.id}`}>Revoke</button>`}</td>
            </tr>`)}
          </tbody>
        </table>
      </div>`}`
}
