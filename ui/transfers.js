/* global AbortController, URLSearchParams */
import { useEffect, useState } from 'preact/hooks'
import { html } from './html.js'
import { api, followEvents, throttle } from './api.js'
import { STATES } from './format.js'
import { Progress, StateBadge, rateAndEta, withProgress } from './rows.js'
import { Actions } from './actions.js'
import { useCan } from './role.js'

const PAGE = 25

const NO_FILTERS = { agent: '', label: '', q: '' }

export function TransfersPage () {
  const operator = useCan('operator')
  const [state, setState] = useState('')
  // The text filters apply on submit (Enter or the button), so typing does not ask the server at every key.
  const [draft, setDraft] = useState(NO_FILTERS)
  const [filters, setFilters] = useState(NO_FILTERS)
  // The cursors of the pages before this one: the server pages, the browser never holds more than one page.
  const [cursors, setCursors] = useState([])
  const [page, setPage] = useState()
  const [error, setError] = useState()
  const after = cursors.at(-1)

  useEffect(() => {
    const stop = new AbortController()
    const query = new URLSearchParams({ order: 'desc', limit: String(PAGE) })
    if (state !== '') query.set('state', state)
    for (const [key, value] of Object.entries(filters)) if (value !== '') query.set(key, value)
    if (after !== undefined) query.set('after', after)
    const load = throttle(async () => {
      try {
        const next = await api('GET', `/v1/transfers?${query}`)
        if (!stop.signal.aborted) { setPage(next); setError(undefined) }
      } catch (err) {
        if (!stop.signal.aborted) setError(err.message)
      }
    }, 500)
    load()
    followEvents('transfer.#', {
      signal: stop.signal,
      onOpen: load,
      onEvent: ev => {
        const [, id, kind] = ev.topic.split('.')
        // Progress is applied in place; a change of state may move a transfer into or out of this page, so the page is read again.
        if (kind === 'progress') setPage(p => p === undefined ? p : { ...p, items: p.items.map(t => t.id === id ? withProgress(t, ev.data) : t) })
        else load()
      }
    })
    return () => stop.abort()
  }, [state, filters, after])

  const replace = rec => setPage(p => ({ ...p, items: p.items.map(t => t.id === rec.id ? rec : t) }))
  const drop = rec => setPage(p => ({ ...p, items: p.items.filter(t => t.id !== rec.id) }))
  const field = (key, label, placeholder) => html`
    <label>${label}
      <input name=${key} value=${draft[key]} placeholder=${placeholder} onInput=${e => { const v = e.currentTarget.value; setDraft(d => ({ ...d, [key]: v })) }} />
    </label>`
  const apply = e => { e.preventDefault(); setFilters({ agent: draft.agent.trim(), label: draft.label.trim(), q: draft.q.trim() }); setCursors([]) }
  const filtered = state !== '' || Object.values(filters).some(v => v !== '')
  return html`
    <h1>Transfers</h1>
    <div class="toolbar">
      <label>State
        <select value=${state} onChange=${e => { setState(e.currentTarget.value); setCursors([]) }}>
          <option value="">any</option>
          ${STATES.map(s => html`<option value=${s}>${s}</option>`)}
        </select>
      </label>
      ${operator && html`<a class="button" href="#/submit">New transfer</a>`}
    </div>
    <form class="filters" role="search" aria-label="Filter transfers" onSubmit=${apply}>
      ${field('q', 'Text', 'id, file, error…')}
      ${field('agent', 'Agent', 'store-1')}
      ${field('label', 'Label', 'team:red')}
      <button type="submit">Filter</button>
    </form>
    ${error !== undefined && html`<p class="error" role="alert">${error}</p>`}
    ${page === undefined
      ? html`<p>Loading…</p>`
      : page.items.length === 0
        ? html`<p>No transfers${filtered ? ' match these filters' : ''}.</p>`
        : html`
      <div class="table-wrap">
        <table class="transfers">
          <thead><tr><th scope="col">Transfer</th><th scope="col">State</th><th scope="col">Source → destination</th><th scope="col">Progress</th><th scope="col">Rate</th><th scope="col">ETA</th><th scope="col">Attempt</th><th scope="col">Last error</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>
            ${page.items.map(t => {
              const live = rateAndEta(t)
              return html`
              <tr key=${t.id} data-transfer=${t.id}>
                <th scope="row"><a href=${`#/transfers/${t.id}`}><code>${t.id}</code></a></th>
                <td><${StateBadge} state=${t.state} /></td>
                <td class="route"><span>${t.source}</span> → <span>${t.destinations !== undefined ? `${t.destinations.length} destinations` : t.destination}</span></td>
                <td><${Progress} transfer=${t} /></td>
                <td class="num">${live.rate}</td>
                <td class="num">${live.eta}</td>
                <td class="num">${t.attempt}</td>
                <td>${t.lastError !== undefined ? html`<code title=${t.lastError.message}>${t.lastError.code}</code>` : ''}</td>
                <td><${Actions} transfer=${t} onChanged=${replace} onDeleted=${drop} onError=${setError} /></td>
              </tr>`
            })}
          </tbody>
        </table>
      </div>`}
    <nav class="pager" aria-label="Pages">
      <button type="button" disabled=${cursors.length === 0} onClick=${() => setCursors(c => c.slice(0, -1))}>Newer</button>
      <button type="button" disabled=${page?.next === undefined} onClick=${() => setCursors(c => [...c, page.next])}>Older</button>
    </nav>`
}
