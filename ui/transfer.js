/* global AbortController, window */
import { useEffect, useRef, useState } from 'preact/hooks'
import { html } from './html.js'
import { api, followEvents, readFeed, throttle } from './api.js'
import { bytes } from './format.js'
import { Progress, StateBadge, rateAndEta, withProgress } from './rows.js'
import { Actions } from './actions.js'
import { Swarm } from './swarm.js'
import { TreeFiles, fileCounts } from './tree-files.js'

// The history shows changes of state; progress events are many and add nothing a bar does not show.
const historyTopics = id => `transfer.${id}.state,transfer.${id}.destination,transfer.${id}.manifest,transfer.${id}.deleted`

function describe (ev) {
  const d = ev.data
  if (ev.topic.endsWith('.state')) return `${d.from ?? '–'} → ${d.to}${d.attempt !== undefined ? ` (attempt ${d.attempt})` : ''}${d.error !== undefined ? ` — ${d.error.code}: ${d.error.message}` : ''}`
  if (ev.topic.endsWith('.destination')) return `destination on ${d.agent}: ${d.state}${d.error !== undefined ? ` — ${d.error.code}: ${d.error.message}` : ''}`
  if (ev.topic.endsWith('.deleted')) return 'deleted'
  if (ev.topic.endsWith('.manifest')) return `manifest made: ${bytes(d.size)} in pieces of ${bytes(d.pieceSize)}, sha256 ${d.sha256}`
  return JSON.stringify(d)
}

/** Adds events not yet listed, in seq order: the feed and the live stream may both bring one. */
function merge (list, more) {
  const seen = new Set(list.map(ev => ev.seq))
  return [...list, ...more.filter(ev => !seen.has(ev.seq))].sort((a, b) => a.seq - b.seq)
}

export function TransferPage ({ id }) {
  const [t, setT] = useState()
  const [events, setEvents] = useState([])
  const [error, setError] = useState()
  // Being deleted, or deleted: a read of the record would only meet a 404.
  const gone = useRef(false)

  useEffect(() => {
    const stop = new AbortController()
    const guard = fn => async () => {
      try {
        await fn()
        if (!stop.signal.aborted) setError(undefined)
      } catch (err) {
        if (!stop.signal.aborted) setError(err.message)
      }
    }
    const loadRecord = throttle(guard(async () => {
      // Left the page (or the transfer was deleted) meanwhile: nothing to ask.
      if (stop.signal.aborted || gone.current) return
      const rec = await api('GET', `/v1/transfers/${id}`)
      if (!stop.signal.aborted) setT(rec)
    }), 500)
    // Read once the stream is live (and again after it reconnects), so that nothing falls between the two.
    const loadHistory = guard(async () => {
      const items = await readFeed(historyTopics(id))
      if (!stop.signal.aborted) setEvents(list => merge(list, items))
    })
    loadRecord()
    followEvents(`transfer.${id}.#`, {
      signal: stop.signal,
      onOpen: () => { loadRecord(); void loadHistory() },
      onEvent: ev => {
        if (ev.topic.endsWith('.progress')) { setT(cur => cur === undefined ? cur : withProgress(cur, ev.data)); return }
        setEvents(list => merge(list, [ev]))
        // A deleted record answers 404: the history says so, the record shown stays as it was.
        if (ev.topic.endsWith('.deleted')) gone.current = true
        else loadRecord()
      }
    })
    return () => stop.abort()
  }, [id])

  if (t === undefined) return html`<h1>Transfer <code>${id}</code></h1>${error !== undefined ? html`<p class="error" role="alert">${error}</p>` : html`<p>Loading…</p>`}`
  const live = rateAndEta(t)
  return html`
    <h1>Transfer <code>${t.id}</code></h1>
    ${error !== undefined && html`<p class="error" role="alert">${error}</p>`}
    <dl class="facts">
      <dt>State</dt><dd><${StateBadge} state=${t.state} /></dd>
      <dt>Source</dt><dd><code>${t.source}</code></dd>
      ${t.destinations === undefined && html`<dt>Destination</dt><dd><code>${t.destination}</code></dd>`}
      <dt>Progress</dt><dd><${Progress} transfer=${t} /> ${bytes(t.progress.bytesDone)} of ${bytes(t.progress.bytesTotal)}</dd>
      ${t.progress.files !== undefined && html`<dt>Files</dt><dd data-files>${fileCounts(t.progress.files)}</dd>`}
      <dt>Rate</dt><dd>${live.rate}</dd>
      <dt>ETA</dt><dd>${live.eta}</dd>
      <dt>Attempt</dt><dd>${t.attempt} of ${t.retries + 1}</dd>
      ${t.lastError !== undefined && html`<dt>Last error</dt><dd><code>${t.lastError.code}</code> ${t.lastError.message}</dd>`}
      ${t.sha256 !== undefined && html`<dt>sha256</dt><dd><code class="hash">${t.sha256}</code></dd>`}
      ${t.blake3 !== undefined && html`<dt>blake3</dt><dd><code class="hash">${t.blake3}</code></dd>`}
      ${t.checksumMode === 'none' && html`<dt>Checksum</dt><dd>none (not verified end to end, as asked)</dd>`}
      <dt>Created</dt><dd><time datetime=${t.createdAt}>${new Date(t.createdAt).toLocaleString()}</time></dd>
      ${t.finishedAt !== undefined && html`<dt>Finished</dt><dd><time datetime=${t.finishedAt}>${new Date(t.finishedAt).toLocaleString()}</time></dd>`}
    </dl>
    <p><${Actions} transfer=${t} onChanged=${setT} onDeleted=${() => { window.location.hash = '#/transfers' }} onDeleting=${deleting => { gone.current = deleting }} onError=${setError} openRetry=${true} /></p>
    ${t.destinations !== undefined && html`
      <h2>Destinations</h2>
      <div class="table-wrap">
        <table class="destinations">
          <thead><tr><th scope="col">Destination</th><th scope="col">Agent</th><th scope="col">State</th><th scope="col">Received</th><th scope="col">Last error</th></tr></thead>
          <tbody>${t.destinations.map(d => html`
            <tr key=${d.destination}>
              <th scope="row"><code>${d.destination}</code></th>
              <td>${d.agent}</td>
              <td><${StateBadge} state=${d.state} /></td>
              <td><progress max=${t.manifest?.size ?? 1} value=${d.bytesDone}></progress> ${bytes(d.bytesDone)}</td>
              <td>${d.lastError !== undefined ? html`<code title=${d.lastError.message}>${d.lastError.code}</code>` : ''}</td>
            </tr>`)}
          </tbody>
        </table>
      </div>`}
    ${t.destinations !== undefined && html`<${Swarm} id=${t.id} running=${t.state === 'active' || t.state === 'scheduled'} />`}
    ${t.destinations === undefined && t.source.endsWith('/') && html`<${TreeFiles} id=${t.id} version=${`${t.state}/${t.attempt}`} />`}
    <h2>History</h2>
    <ol class="history">
      ${events.map(ev => html`<li key=${ev.seq}><time datetime=${ev.time}>${new Date(ev.time).toLocaleTimeString()}</time> ${describe(ev)}</li>`)}
    </ol>`
}
