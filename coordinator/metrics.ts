import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { errorResponses } from './api/schemas.ts'
import type { ApiInstance } from './api/types.ts'
import { TERMINAL_STATES, TRANSFER_STATES } from './model.ts'
import type { TransferRecord, TransferState } from './model.ts'
import type { TransferStore } from './store.ts'

// A pass over an idle queue takes well under a millisecond; a busy one with a synced batch per decision takes tens.
const PASS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
// From a transfer scheduled in the next pass (the dispatcher ticks every 100 ms) to one that waited minutes behind limits.
const WAIT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600]
// REST answers take a few milliseconds; long polls on the change feed take up to their wait.
const API_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * The coordinator's Prometheus series: queue depth per state (read from the
 * store at scrape time), transfer outcomes (from the store's transitions),
 * scheduling pass duration and queue wait, and REST latency.
 */
export class CoordinatorMetrics {
  readonly registry = new Registry()
  readonly #store: TransferStore
  readonly #passSeconds: Histogram
  readonly #waitSeconds: Histogram
  readonly #apiSeconds: Histogram<'method' | 'route' | 'status_code'>
  readonly #started: Counter
  readonly #finished: Counter<'state'>
  readonly #failed: Counter<'code' | 'class'>
  readonly #retried: Counter<'code'>
  /** When each queued transfer (as far as this process saw) joined the queue, for the wait histogram. */
  readonly #queuedAt = new Map<string, number>()
  readonly #onTransition = (rec: TransferRecord, from: TransferState): void => this.#transition(rec, from)
  readonly #onCreated = (rec: TransferRecord): void => { this.#queuedAt.set(rec.id, performance.now()) }
  readonly #onRemoved = (rec: TransferRecord): void => { this.#queuedAt.delete(rec.id) }

  constructor (store: TransferStore) {
    this.#store = store
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    new Gauge({
      name: 'staccato_transfers',
      help: 'Transfers in each state now (queued is the queue depth).',
      labelNames: ['state'],
      registers,
      collect () {
        for (const state of TRANSFER_STATES) this.set({ state }, store.countInState(state))
      }
    })
    new Gauge({
      name: 'staccato_agents',
      help: 'Enrolled agents, by whether they are connected now.',
      labelNames: ['online'],
      registers,
      collect () {
        const agents = store.listAgents()
        const online = agents.filter(a => a.online).length
        this.set({ online: 'true' }, online)
        this.set({ online: 'false' }, agents.length - online)
      }
    })
    this.#started = new Counter({ name: 'staccato_transfers_started_total', help: 'Attempts that started moving bytes (entered active).', registers })
    this.#finished = new Counter({ name: 'staccato_transfers_finished_total', help: 'Transfers that reached a final state, by that state.', labelNames: ['state'], registers })
    this.#failed = new Counter({
      name: 'staccato_transfers_failed_total',
      help: 'Transfers that failed for good, by error code and class (fatal, or retryable with its retries used up).',
      labelNames: ['code', 'class'],
      registers
    })
    this.#retried = new Counter({ name: 'staccato_transfer_retries_total', help: 'Attempts that failed with a retryable error and went back to the queue, by error code.', labelNames: ['code'], registers })
    this.#passSeconds = new Histogram({ name: 'staccato_scheduling_pass_seconds', help: 'Duration of one scheduling pass (decide and mark scheduled).', buckets: PASS_BUCKETS, registers })
    this.#waitSeconds = new Histogram({ name: 'staccato_scheduling_wait_seconds', help: 'Time from joining the queue to being scheduled.', buckets: WAIT_BUCKETS, registers })
    this.#apiSeconds = new Histogram({
      name: 'staccato_api_request_duration_seconds',
      help: 'REST request latency, by method, route pattern and status code.',
      labelNames: ['method', 'route', 'status_code'],
      buckets: API_BUCKETS,
      registers
    })
    for (const state of TERMINAL_STATES) this.#finished.inc({ state }, 0)
    store.on('transition', this.#onTransition)
    store.on('created', this.#onCreated)
    store.on('removed', this.#onRemoved)
  }

  get contentType (): string { return this.registry.contentType }

  async text (): Promise<string> { return await this.registry.metrics() }

  /** For the dispatcher's onTick. */
  observePass (seconds: number): void {
    this.#passSeconds.observe(seconds)
  }

  /** A Fastify onResponse hook. The route pattern, not the URL, keeps the label set small. */
  readonly onResponse = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const route = req.routeOptions.url ?? 'unmatched'
    this.#apiSeconds.observe({ method: req.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000)
  }

  close (): void {
    this.#store.off('transition', this.#onTransition)
    this.#store.off('created', this.#onCreated)
    this.#store.off('removed', this.#onRemoved)
  }

  #transition (rec: TransferRecord, from: TransferState): void {
    const now = performance.now()
    if (rec.state === 'queued') this.#queuedAt.set(rec.id, now)
    if (rec.state === 'scheduled') {
      const since = this.#queuedAt.get(rec.id)
      if (since !== undefined) this.#waitSeconds.observe((now - since) / 1000)
    }
    if (rec.state !== 'queued') this.#queuedAt.delete(rec.id)
    if (rec.state === 'active') this.#started.inc()
    if (TERMINAL_STATES.has(rec.state)) this.#finished.inc({ state: rec.state })
    if (rec.state === 'failed') {
      this.#failed.inc({ code: rec.lastError?.code ?? 'unknown', class: rec.lastError?.retryable === true ? 'retryable' : 'fatal' })
    }
    if (rec.state === 'queued' && from !== 'queued' && rec.lastError !== undefined) this.#retried.inc({ code: rec.lastError.code })
  }
}

/**
 * GET /metrics in the Prometheus text format. It asks for a token like every
 * other route, since the API may listen beyond loopback (Prometheus sends one
 * with `authorization: { credentials: … }`); a reader token is enough: the
 * series are counts over all tenants and name no transfer, tenant or location.
 */
export function metricsRoute (app: ApiInstance, metrics: CoordinatorMetrics): void {
  app.get('/metrics', {
    config: { scrape: true },
    schema: {
      description: 'Prometheus metrics (text exposition format), counted over all tenants: needs the metrics token (--metrics-token) or an admin token for all tenants',
      response: { 200: Type.String({ description: 'text/plain; version=0.0.4' }), ...errorResponses }
    }
  }, async (_req, reply) => {
    return reply.type(metrics.contentType).send(await metrics.text())
  })
}
