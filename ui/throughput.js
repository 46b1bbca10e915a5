/* global setInterval, clearInterval, ResizeObserver, getComputedStyle */
import { useEffect, useRef, useState } from 'preact/hooks'
import uPlot from 'uplot'
import { html } from './html.js'
import { api } from './api.js'
import { bytes, rate } from './format.js'

/** The coordinator's buckets are 10 s wide: reading more often shows nothing new. */
const POLL_MS = 10_000

function Chart ({ series }) {
  const box = useRef()
  const plot = useRef()
  useEffect(() => {
    const el = box.current
    const style = getComputedStyle(el)
    const color = name => style.getPropertyValue(name).trim()
    plot.current = new uPlot({
      width: el.clientWidth,
      height: 260,
      series: [
        {},
        { label: 'received', stroke: color('--accent'), width: 2, value: (u, v) => v === null ? '–' : rate(v) },
        { label: 'sent', stroke: color('--ok'), width: 2, value: (u, v) => v === null ? '–' : rate(v) }
      ],
      axes: [
        { stroke: color('--muted'), grid: { stroke: color('--line') } },
        { stroke: color('--muted'), grid: { stroke: color('--line') }, size: 80, values: (u, ticks) => ticks.map(v => rate(v)) }
      ]
    }, [[], [], []], el)
    const resize = new ResizeObserver(() => plot.current.setSize({ width: el.clientWidth, height: 260 }))
    resize.observe(el)
    return () => { resize.disconnect(); plot.current.destroy() }
  }, [])
  useEffect(() => {
    if (series === undefined || plot.current === undefined) return
    const step = series.bucketSeconds
    const start = Date.parse(series.from) / 1000
    // Bytes per bucket → bytes per second, at each bucket's start.
    plot.current.setData([series.rx.map((_, i) => start + i * step), series.rx.map(b => b / step), series.tx.map(b => b / step)])
  }, [series])
  return html`<div class="chart" ref=${box} role="img" aria-label="Throughput over the last hour, received and sent"></div>`
}

export function ThroughputPage () {
  const [agents, setAgents] = useState([])
  const [agent, setAgent] = useState('')
  const [series, setSeries] = useState()
  const [error, setError] = useState()

  useEffect(() => {
    api('GET', '/v1/agents').then(list => setAgents(list.items.map(a => a.name)), err => setError(err.message))
  }, [])
  useEffect(() => {
    let stopped = false
    const load = async () => {
      try {
        const next = await api('GET', `/v1/throughput${agent !== '' ? `?agent=${encodeURIComponent(agent)}` : ''}`)
        if (!stopped) { setSeries(next); setError(undefined) }
      } catch (err) {
        if (!stopped) setError(err.message)
      }
    }
    void load()
    const timer = setInterval(load, POLL_MS)
    return () => { stopped = true; clearInterval(timer) }
  }, [agent])

  const total = s => s === undefined ? 0 : s.reduce((a, b) => a + b, 0)
  return html`
    <h1>Throughput</h1>
    <div class="toolbar">
      <label>Agent
        <select value=${agent} onChange=${e => setAgent(e.currentTarget.value)}>
          <option value="">whole mesh</option>
          ${agents.map(a => html`<option value=${a}>${a}</option>`)}
        </select>
      </label>
    </div>
    ${error !== undefined && html`<p class="error" role="alert">${error}</p>`}
    <${Chart} series=${series} />
    <p class="hint">Last hour, in 10 s steps, from what the agents report; kept in the coordinator's memory.
      Received: <span data-total="rx">${bytes(total(series?.rx))}</span>, sent: <span data-total="tx">${bytes(total(series?.tx))}</span>.</p>`
}
