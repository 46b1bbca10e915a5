/* global URLSearchParams */
import { useEffect, useState } from 'preact/hooks'
import { html } from './html.js'
import { api } from './api.js'
import { bytes } from './format.js'

// The states a tree's file can be in (mesh/messages.ts TREE_FILE_STATES).
const FILE_STATES = ['done', 'skipped', 'failed', 'deleted', 'would-copy', 'would-delete']
const PAGE = 100

/** `3 copied, 1 skipped, 0 failed of 4`, a mirror's removals and a dry run's plan (as the CLI says it). */
export function fileCounts (f) {
  let text = `${f.done} copied, ${f.skipped} skipped, ${f.failed} failed of ${f.total}`
  if (f.deleted !== undefined) text += `, ${f.deleted} deleted`
  if (f.wouldCopy !== undefined) text += ` (dry run: ${f.wouldCopy} would be copied${f.wouldDelete !== undefined ? `, ${f.wouldDelete} would be deleted` : ''})`
  return text
}

/**
 * A tree's files as its agent reported them, a page at a time, filtered by
 * state: what failed and why, what was skipped and why. Read again when the
 * transfer's state changes (`version`), not on every progress event.
 */
export function TreeFiles ({ id, version }) {
  const [state, setState] = useState('')
  const [items, setItems] = useState([])
  const [next, setNext] = useState()
  const [error, setError] = useState()

  const load = async (after, keep) => {
    const q = new URLSearchParams({ limit: String(PAGE) })
    if (state !== '') q.set('state', state)
    if (after !== undefined) q.set('after', after)
    try {
      const page = await api('GET', `/v1/transfers/${id}/files?${q}`)
      setItems(list => [...keep ? list : [], ...page.items])
      setNext(page.next)
      setError(undefined)
    } catch (err) {
      setError(err.message)
    }
  }
  useEffect(() => { void load(undefined, false) }, [id, state, version])

  return html`
    <h2>Files</h2>
    <div class="toolbar">
      <label>State
        <select id="file-state" value=${state} onChange=${e => setState(e.currentTarget.value)}>
          <option value="">any</option>
          ${FILE_STATES.map(s => html`<option value=${s}>${s}</option>`)}
        </select>
      </label>
    </div>
    ${error !== undefined && html`<p class="error" role="alert">${error}</p>`}
    ${items.length === 0
      ? html`<p class="files-empty">No files${state !== '' ? ` ${state}` : ''} yet.</p>`
      : html`
      <div class="table-wrap">
        <table class="files">
          <thead><tr><th scope="col">Path</th><th scope="col">State</th><th scope="col">Size</th><th scope="col">Why</th></tr></thead>
          <tbody>${items.map(f => html`
            <tr key=${f.path} data-file=${f.path}>
              <th scope="row"><code>${f.path}</code></th>
              <td data-file-state>${f.state}</td>
              <td>${bytes(f.size)}</td>
              <td>${f.error !== undefined ? html`<code>${f.error.code}</code> ${f.error.message}` : f.reason ?? ''}</td>
            </tr>`)}
          </tbody>
        </table>
      </div>`}
    ${next !== undefined && html`<p><button type="button" class="more-files" onClick=${() => load(next, true)}>More files</button></p>`}`
}
