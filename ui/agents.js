/* global setInterval, clearInterval, AbortController */
import { useEffect, useState } from 'preact/hooks'
import { html } from './html.js'
import { api, followEvents, throttle } from './api.js'
import { ago, bytes, rate } from './format.js'

/** Active transfers per agent. Only active ones are read, and they are bounded by the agents' concurrency, so one page of them is enough. */
async function activeByAgent () {
  const counts = new Map()
  const page = await api('GET', '/v1/transfers?state=active&limit=1000')
  for (const t of page.items) for (const a of t.agents) counts.set(a, (counts.get(a) ?? 0) + 1)
  return counts
}

export function AgentsPage () {
  const [agents, setAgents] = useState()
  const [active, setActive] = useState(new Map())
  const [error, setError] = useState()
  const [now, setNow] = useState(Date.now())

  useEffect(() => {
    const stop = new AbortController()
    const load = throttle(async () => {
      try {
        const [list, counts] = await Promise.all([api('GET', '/v1/agents'), activeByAgent()])
        if (stop.signal.aborted) return
        setAgents(list.items)
        setActive(counts)
        setError(undefined)
      } catch (err) {
        if (!stop.signal.aborted) setError(err.message)
      }
    }, 500)
    load()
    followEvents('agent.#,transfer.*.state', { onOpen: load, onEvent: load, signal: stop.signal })
    // "Last seen" counts up between events, and the rates move without any.
    const tick = setInterval(() => { setNow(Date.now()); load() }, 5000)
    return () => { stop.abort(); clearInterval(tick) }
  }, [])

  return html`
    <h1>Agents</h1>
    ${error !== undefined && html`<p class="error" role="alert">${error}</p>`}
    ${agents === undefined
      ? html`<p>Loading…</p>`
      : agents.length === 0
        ? html`<p>No agent has enrolled yet.</p>`
        : html`
      <div class="table-wrap">
        <table class="agents">
          <thead><tr><th scope="col">Agent</th><th scope="col">Status</th><th scope="col">Version</th><th scope="col">Volumes</th><th scope="col">Plug-ins</th><th scope="col">Active transfers</th><th scope="col">Receiving</th><th scope="col">Sending</th><th scope="col">Last seen</th></tr></thead>
          <tbody>
            ${agents.map(a => html`
              <tr key=${a.name} data-agent=${a.name}>
                <th scope="row">${a.name}</th>
                <td><span class=${`badge ${a.online ? 'ok' : 'bad'}`} data-status>${a.online ? 'online' : 'offline'}</span></td>
                <td>${a.version}</td>
                <td>${a.volumes.map(v => html`<span class="tag" key=${v.name} data-volume=${v.name}>${v.name}${v.readOnly ? ' (read-only)' : ''}${v.free !== undefined ? html` · <span data-free>${bytes(v.free)} free</span>` : ''}</span>`)}</td>
                <td>${a.plugins.join(', ')}</td>
                <td class="num" data-active>${active.get(a.name) ?? 0}</td>
                <td class="num" data-rx>${rate(a.rate?.rxBytesPerSecond)}</td>
                <td class="num" data-tx>${rate(a.rate?.txBytesPerSecond)}</td>
                <td><time datetime=${a.lastSeenAt} title=${a.lastSeenAt}>${a.online ? 'now' : ago(a.lastSeenAt, now)}</time></td>
              </tr>`)}
          </tbody>
        </table>
      </div>`}`
}
