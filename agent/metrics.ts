import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { AgentCounters } from './counters.ts'

export interface AgentMetricsSource {
  name: string
  counters: AgentCounters
  /** Ids of the transfers running now. */
  active: () => string[]
}

export interface AgentMetrics {
  registry: Registry
  /** Prometheus text exposition of every series. */
  text: () => Promise<string>
  contentType: string
  stop: () => void
}

/** Throughput is the change of the byte totals over this window, sampled once a second. */
const THROUGHPUT_WINDOW_S = 10

/**
 * Prometheus series for one agent, read from its counters at scrape time so
 * that the hot paths keep incrementing plain numbers.
 */
export function agentMetrics (src: AgentMetricsSource): AgentMetrics {
  const registry = new Registry()
  registry.setDefaultLabels({ agent: src.name })
  collectDefaultMetrics({ register: registry })
  const c = src.counters

  new Counter({
    name: 'staccato_agent_bytes_total',
    help: 'Bytes moved by this agent, by direction and protocol: in = read from sources (agent = pulled from another agent), out = written to destinations or, for protocol agent, served to other agents.',
    labelNames: ['direction', 'protocol'],
    registers: [registry],
    collect () {
      this.reset()
      for (const [protocol, bytes] of Object.entries(c.bytesIn)) this.inc({ direction: 'in', protocol }, bytes)
      const out = { ...c.bytesOut, agent: (c.bytesOut.agent ?? 0) + c.bytesServed }
      for (const [protocol, bytes] of Object.entries(out)) this.inc({ direction: 'out', protocol }, bytes)
    }
  })
  plainCounter(registry, 'staccato_agent_journal_writes_total', 'Durable offsets written to the journal (each after an fsync of the data).', () => c.journalCommits)
  plainCounter(registry, 'staccato_agent_swarm_pieces_served_total', 'Pieces sent to other agents over the swarm protocol.', () => c.swarmPiecesServed)
  plainCounter(registry, 'staccato_agent_mirror_blob_bytes_served_total', 'Blob bytes the registry mirror sent to its clients.', () => c.mirrorBytesServed)
  plainCounter(registry, 'staccato_agent_mirror_blob_bytes_served_arriving_total', 'Blob bytes the registry mirror sent while the blob was still arriving through a distribution.', () => c.mirrorBytesServedArriving)
  plainCounter(registry, 'staccato_agent_data_requests_total', 'Data requests from other agents.', () => c.dataRequests)
  plainCounter(registry, 'staccato_agent_data_requests_refused_total', 'Data requests refused (bad ticket, path outside a volume, malformed header).', () => c.dataRefused)
  new Counter({
    name: 'staccato_agent_transfers_total',
    help: 'Transfers this agent ran to an end, by outcome.',
    labelNames: ['outcome'],
    registers: [registry],
    collect () {
      this.reset()
      this.inc({ outcome: 'succeeded' }, c.transfersSucceeded)
      this.inc({ outcome: 'failed' }, c.transfersFailed)
    }
  })
  new Gauge({
    name: 'staccato_agent_active_transfers',
    help: 'Transfers running on this agent now.',
    registers: [registry],
    collect () { this.set(src.active().length) }
  })

  const samples: Array<{ at: number, in: number, out: number }> = []
  const sample = (): void => {
    samples.push({ at: performance.now(), in: sum(c.bytesIn), out: sum(c.bytesOut) + c.bytesServed })
    if (samples.length > THROUGHPUT_WINDOW_S + 1) samples.shift()
  }
  sample()
  const timer = setInterval(sample, 1000)
  timer.unref()
  new Gauge({
    name: 'staccato_agent_throughput_bytes_per_second',
    help: `Bytes per second over the last ${THROUGHPUT_WINDOW_S} s, by direction.`,
    labelNames: ['direction'],
    registers: [registry],
    collect () {
      const first = samples[0]
      const now = { at: performance.now(), in: sum(c.bytesIn), out: sum(c.bytesOut) + c.bytesServed }
      const seconds = (now.at - first.at) / 1000
      this.set({ direction: 'in' }, seconds > 0 ? (now.in - first.in) / seconds : 0)
      this.set({ direction: 'out' }, seconds > 0 ? (now.out - first.out) / seconds : 0)
    }
  })

  return {
    registry,
    text: async () => await registry.metrics(),
    contentType: registry.contentType,
    stop: () => clearInterval(timer)
  }
}

function plainCounter (registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect () {
      this.reset()
      this.inc(read())
    }
  })
}

function sum (totals: Record<string, number>): number {
  let n = 0
  for (const v of Object.values(totals)) n += v
  return n
}

export type HttpRoute = () => Promise<{ type: string, body: string }>

/** A small HTTP listener for /status and /metrics; resolves with its port once listening. */
export async function serveHttp (host: string, port: number, routes: Record<string, HttpRoute>): Promise<{ server: Server, port: number }> {
  const server = createServer((req, res) => {
    const route = Object.hasOwn(routes, req.url ?? '') ? routes[req.url ?? ''] : undefined
    if (route === undefined || req.method !== 'GET') { res.writeHead(404).end(); return }
    route().then(
      ({ type, body }) => res.writeHead(200, { 'content-type': type }).end(body),
      () => res.writeHead(500).end()
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  const addr = server.address()
  return { server, port: addr !== null && typeof addr === 'object' ? addr.port : port }
}

export function metricsRoute (metrics: AgentMetrics): HttpRoute {
  return async () => ({ type: metrics.contentType, body: await metrics.text() })
}
