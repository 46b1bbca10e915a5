import type { TransferStore } from '../store.ts'
import { systemClock } from '../clock.ts'
import type { Clock } from '../clock.ts'
import { AddressPolicy } from '../../mesh/index.ts'
import { EventBus } from './bus.ts'
import { createPoster } from './http-post.ts'
import type { Poster } from './http-post.ts'
import { JobRunner } from './jobs.ts'
import type { Job, Log } from './jobs.ts'
import { DEFAULT_RETRY_SCHEDULE_MS, Outbox } from './outbox.ts'
import type { DeliveryConfig } from './outbox.ts'
import { retentionJob } from './retention.ts'
import type { RetentionConfig } from './retention.ts'
import { stalledJob } from './stalled.ts'
import type { StalledConfig } from './stalled.ts'
import { WebhookRegistry } from './webhook-registry.ts'

export interface EventsConfig {
  retention: RetentionConfig
  stalled: StalledConfig
  delivery: DeliveryConfig
  /** Address classes, addresses or CIDR ranges webhooks may reach although refused by default (loopback, link-local, metadata, private). */
  allow: string[]
  stream: {
    /** A comment line this often keeps proxies from closing an idle stream. */
    heartbeatMs: number
    maxStreams: number
  }
}

export type EventsConfigInput = { [K in keyof EventsConfig]?: EventsConfig[K] extends unknown[] ? EventsConfig[K] : Partial<EventsConfig[K]> }

const DAY = 24 * 3600_000

export const DEFAULT_EVENTS_CONFIG: EventsConfig = {
  retention: { maxAgeMs: 7 * DAY, maxCount: 1_000_000, intervalMs: 60_000 },
  stalled: { afterMs: 120_000, intervalMs: 15_000 },
  delivery: {
    retryScheduleMs: DEFAULT_RETRY_SCHEDULE_MS,
    jitter: 0.2,
    // Standard Webhooks asks receivers to answer within 15 s.
    timeoutMs: 15_000,
    intervalMs: 1000,
    concurrency: 32,
    perEndpoint: 4,
    logSize: 1000,
    // Four attempt timeouts: a replica that stops renewing is taken over within a minute (replicas on PostgreSQL only).
    claimMs: 60_000
  },
  allow: [],
  // 15 s is below the 30–60 s idle timeouts of common proxies and load balancers.
  stream: { heartbeatMs: 15_000, maxStreams: 1000 }
}

export function eventsConfig (input: EventsConfigInput = {}): EventsConfig {
  const d = DEFAULT_EVENTS_CONFIG
  const config: EventsConfig = {
    retention: { ...d.retention, ...input.retention },
    stalled: { ...d.stalled, ...input.stalled },
    delivery: { ...d.delivery, ...input.delivery },
    allow: input.allow ?? d.allow,
    stream: { ...d.stream, ...input.stream }
  }
  if (config.delivery.retryScheduleMs.some(ms => !(ms >= 0))) throw new TypeError('delivery.retryScheduleMs: delays must be non-negative')
  return config
}

/**
 * Everything events need beyond the store's log: the bus for live readers,
 * webhooks and their outbox, and the background jobs (webhook delivery,
 * retention, stalled transfers). open() must run before anything writes to
 * the store, so that no event is written without its deliveries.
 */
export class EventServices {
  readonly store: TransferStore
  readonly config: EventsConfig
  readonly bus: EventBus
  readonly policy: AddressPolicy
  readonly webhooks: WebhookRegistry
  readonly outbox: Outbox
  readonly jobs: JobRunner
  readonly #poster: Poster
  #opened = false

  /** `leading`: whether this coordinator leads its replicas (it alone reports stalled transfers); always, alone. */
  constructor (store: TransferStore, input: EventsConfigInput = {}, log: Log = () => {}, clock: Clock = systemClock, leading: () => boolean = () => true) {
    this.store = store
    this.config = eventsConfig(input)
    this.bus = new EventBus(store)
    this.policy = new AddressPolicy(this.config.allow)
    this.webhooks = new WebhookRegistry(store, this.policy)
    this.jobs = new JobRunner(log, clock)
    this.#poster = createPoster(this.policy, this.config.delivery.timeoutMs)
    this.outbox = new Outbox({ store, webhooks: this.webhooks, poster: this.#poster, config: this.config.delivery, log, wake: () => this.jobs.wake('webhook-delivery'), clock })
    this.jobs.add({ name: 'webhook-delivery', intervalMs: this.config.delivery.intervalMs, run: async signal => await this.outbox.run(signal) })
    this.jobs.add(retentionJob(store, this.config.retention, async signal => {
      const deleted = await this.outbox.trimLogs(signal)
      return deleted > 0 ? { deliveryLogDeleted: deleted } : undefined
    }))
    this.jobs.add(stalledJob(store, this.config.stalled, log, leading))
    this.jobs.add(agentLivenessReport(store, this.config.stalled.intervalMs))
  }

  async open (): Promise<void> {
    if (this.#opened) return
    this.#opened = true
    await this.webhooks.load()
    await this.outbox.open()
  }

  /** Starts the background jobs. */
  start (): void {
    this.jobs.start()
  }

  async close (): Promise<void> {
    await this.jobs.stop()
    await this.outbox.close()
    this.webhooks.close()
    this.bus.close()
    this.#poster.close()
  }

  /** Deletes a webhook with its pending deliveries and its delivery log. */
  async removeWebhook (id: string): Promise<void> {
    await this.webhooks.remove(id)
    await this.outbox.dropEndpoint(id)
    await this.outbox.deleteLog(id)
  }
}

/**
 * Agent liveness is checked by the registry (heartbeats); this only makes
 * its outcome visible among the background jobs: a log line and a status
 * whenever the number of online agents changed.
 */
function agentLivenessReport (store: TransferStore, intervalMs: number): Job {
  let last = ''
  return {
    name: 'agent-liveness',
    intervalMs,
    async run () {
      const agents = store.listAgents()
      const online = agents.filter(a => a.online).length
      const now = `${online}/${agents.length}`
      if (now === last) return undefined
      last = now
      return { online, offline: agents.length - online }
    }
  }
}
