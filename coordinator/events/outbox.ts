import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { createIdGenerator } from '../ids.ts'
import type { Clock } from '../clock.ts'
import type { StoreEvent, TransferRecord } from '../model.ts'
import type { AuxOp, AuxPut, TransferStore } from '../store.ts'
import { keys } from '../store-keys.ts'
import { hasOutboxClaims } from '../store-outbox-claims.ts'
import type { OutboxClaim, OutboxClaims } from '../store-outbox-claims.ts'
import { MinHeap } from './heap.ts'
import type { Poster } from './http-post.ts'
import { pause } from './jobs.ts'
import type { JobResult, Log } from './jobs.ts'
import { signedHeaders } from './signing.ts'
import type { WebhookRegistry } from './webhook-registry.ts'

export interface DeliveryConfig {
  /** Delay before each retry, in ms: retry n waits retryScheduleMs[n-1] (± jitter); after the last, the delivery fails. */
  retryScheduleMs: number[]
  /** Fraction of each delay drawn at random, either way, so that retries of many messages spread out. */
  jitter: number
  timeoutMs: number
  /** How often due retries are looked for (new deliveries start at once). */
  intervalMs: number
  concurrency: number
  perEndpoint: number
  /** Delivery log entries kept per webhook. */
  logSize: number
  /**
   * Replicas on one database: how long an outbox entry stays claimed by the
   * replica delivering it. A dead replica's entries are taken over this long
   * after its last claim; it must exceed timeoutMs (a claim is used only
   * while an attempt started now would end before it expires).
   */
  claimMs: number
}

/**
 * Roughly exponential (×2 to ×6), capped at 8 h, about 24 h in all: a
 * receiver down for most of a day still gets its events. Standard Webhooks'
 * own example schedule is of the same shape.
 */
export const DEFAULT_RETRY_SCHEDULE_MS = [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 28_800].map(s => s * 1000)

/** A delivery still to make: written in the same batch as its event. */
export interface OutboxEntry {
  /** A webhook id, or `cb:<transfer id>` for a transfer's callbackUrl. */
  endpoint: string
  tenant: string
  /** For callbacks; a webhook's URL is read at delivery time. */
  url?: string
  event: StoreEvent
  /** Attempts made so far. */
  attempt: number
  /** Epoch ms of the next attempt. */
  nextAt: number
  /** Replicas on one database: who delivers it, until when (store-outbox-claims.ts). */
  claim?: OutboxClaim
}

export type DeliveryOutcome = 'delivered' | 'retrying' | 'failed' | 'refused' | 'gone' | 'dropped'

export interface DeliveryLogEntry {
  id: string
  /** The webhook-id header: the event's id, the same on every attempt. */
  messageId: string
  seq: number
  topic: string
  attempt: number
  at: string
  outcome: DeliveryOutcome
  status?: number
  error?: string
  ms: number
  /** When the next attempt is due, for `retrying`. */
  nextAttemptAt?: string
}

interface Due { key: string, nextAt: number, seq: number }

const CALLBACK = 'cb:'
// A Retry-After is honoured up to a day, the span of the whole default schedule; beyond that it is more likely a mistake.
const MAX_RETRY_AFTER_MS = 24 * 3600_000

/**
 * The durable outbox. Its fan-out runs inside the store's write of every
 * event and adds one outbox record per target to that same batch, so a
 * delivery exists exactly when its event does, whatever is killed when.
 * Deliveries are at least once: a record is removed only after a 2xx (or
 * when it is given up), so a crash mid-delivery sends it again, with the
 * same webhook-id for the receiver to deduplicate on. Each message retries
 * on its own schedule; order across messages is not kept.
 */
export class Outbox {
  readonly #store: TransferStore
  readonly #webhooks: WebhookRegistry
  readonly #poster: Poster
  readonly #config: DeliveryConfig
  readonly #log: Log
  readonly #wake: () => void
  readonly #clock: Clock
  readonly #entries = new Map<string, OutboxEntry>()
  readonly #due = new MinHeap<Due>((a, b) => a.nextAt < b.nextAt || (a.nextAt === b.nextAt && a.seq < b.seq))
  /** Fan-out results of events whose batch is not written yet, by seq. */
  readonly #pending = new Map<number, Array<[string, OutboxEntry]>>()
  readonly #busy = new Map<string, number>()
  readonly #running = new Set<Promise<void>>()
  readonly #logIds = createIdGenerator('dl_')
  readonly #onEvent = (event: StoreEvent): void => { this.#committed(event) }
  readonly #abort = new AbortController()
  /** Set when the store is shared by replicas: entries are claimed before they are delivered. */
  readonly #claims: OutboxClaims | undefined
  /** This process's name in claims. */
  readonly #owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
  #lastClaim = Number.NEGATIVE_INFINITY

  constructor (opts: { store: TransferStore, webhooks: WebhookRegistry, poster: Poster, config: DeliveryConfig, log: Log, wake: () => void, clock: Clock }) {
    this.#clock = opts.clock
    this.#store = opts.store
    this.#webhooks = opts.webhooks
    this.#poster = opts.poster
    this.#config = opts.config
    this.#log = opts.log
    this.#wake = opts.wake
    this.#claims = hasOutboxClaims(opts.store) ? opts.store : undefined
    if (this.#claims !== undefined && !(opts.config.claimMs > opts.config.timeoutMs)) throw new TypeError('delivery.claimMs must exceed delivery.timeoutMs')
  }

  get size (): number { return this.#entries.size }

  get inFlight (): number { return this.#running.size }

  /** Reads what was left to deliver and starts taking part in the store's writes. */
  async open (): Promise<void> {
    // Shared with replicas, entries are claimed as they fall due (run), not all taken at start.
    if (this.#claims === undefined) for (const [key, value] of await this.#store.readAux({ gt: 'o!', lt: 'o~' })) this.#enqueue(key, value as OutboxEntry)
    this.#store.on('event', this.#onEvent)
    this.#store.setFanout((event, record) => this.#fanout(event, record))
  }

  /** Stops taking part in writes; deliveries in flight are aborted (they stay in the outbox). */
  async close (): Promise<void> {
    this.#store.setFanout(undefined)
    this.#store.off('event', this.#onEvent)
    this.#abort.abort()
    await Promise.all(this.#running)
  }

  #fanout (event: StoreEvent, record: TransferRecord | undefined): AuxPut[] {
    const entries: Array<[string, OutboxEntry]> = []
    // Due at once: the outbox's clock, not the event's time, so that one clock decides every delivery.
    const nextAt = this.#clock.now()
    // The writer claims what its write makes: under normal operation it delivers them itself, at once and once.
    const claim = this.#claims !== undefined ? { claim: { owner: this.#owner, until: nextAt + this.#config.claimMs } } : {}
    for (const hook of this.#webhooks.targets(event)) {
      entries.push([keys.outbox(event.seq, hook.id), { endpoint: hook.id, tenant: hook.tenant, event, attempt: 0, nextAt, ...claim }])
    }
    if (record?.callbackUrl !== undefined && event.topic.startsWith(`transfer.${record.id}.`)) {
      const endpoint = CALLBACK + record.id
      entries.push([keys.outbox(event.seq, endpoint), { endpoint, tenant: record.tenant, url: record.callbackUrl, event, attempt: 0, nextAt, ...claim }])
    }
    // Set even when empty: a seq whose batch failed is used again by the next event.
    if (entries.length > 0) this.#pending.set(event.seq, entries)
    else this.#pending.delete(event.seq)
    return entries.map(([key, value]) => ({ key, value }))
  }

  #committed (event: StoreEvent): void {
    const entries = this.#pending.get(event.seq)
    if (entries === undefined) return
    this.#pending.delete(event.seq)
    for (const [key, entry] of entries) this.#enqueue(key, entry)
    this.#wake()
  }

  #enqueue (key: string, entry: OutboxEntry): void {
    this.#entries.set(key, entry)
    this.#due.push({ key, nextAt: entry.nextAt, seq: entry.event.seq })
  }

  /** Starts every delivery that is due, within the concurrency limits; does not wait for them. */
  async run (signal: AbortSignal): Promise<JobResult> {
    const now = this.#clock.now()
    const { concurrency, perEndpoint } = this.#config
    if (this.#claims !== undefined && now - this.#lastClaim >= this.#config.intervalMs) {
      this.#lastClaim = now
      await this.#claimDue(now)
    }
    const deferred: Due[] = []
    let started = 0
    while (this.#running.size < concurrency && !signal.aborted) {
      const top = this.#due.peek()
      if (top === undefined || top.nextAt > now) break
      this.#due.pop()
      const entry = this.#entries.get(top.key)
      // Stale heap items (delivered, rescheduled or dropped since) are skipped.
      if (entry === undefined || entry.nextAt !== top.nextAt) continue
      if (!this.#mine(entry, now)) {
        // The claim would lapse during the attempt: forgotten here, it is claimed again (here or by another replica).
        this.#entries.delete(top.key)
        continue
      }
      if ((this.#busy.get(entry.endpoint) ?? 0) >= perEndpoint) {
        deferred.push(top)
        continue
      }
      this.#start(top.key, entry)
      started++
    }
    for (const d of deferred) this.#due.push(d)
    return started > 0 ? { started, queued: this.#entries.size } : undefined
  }

  /** Takes the due entries no live replica holds (its own included: a restarted process's old claims are someone else's). */
  async #claimDue (now: number): Promise<void> {
    const claims = this.#claims as OutboxClaims
    const rows = await claims.claimOutbox({ owner: this.#owner, now, until: now + this.#config.claimMs, limit: this.#config.concurrency })
    for (const [key, value] of rows) {
      const held = this.#entries.get(key)
      // In flight here already: its claim lapsed mid-attempt (a stall longer than claimMs); the attempt's result decides.
      if (held?.nextAt === Number.POSITIVE_INFINITY) continue
      this.#enqueue(key, value as OutboxEntry)
    }
  }

  /** Whether this process may start an attempt now: alone, always; shared, while its claim outlasts the attempt. */
  #mine (entry: OutboxEntry, now: number): boolean {
    if (this.#claims === undefined) return true
    return entry.claim?.owner === this.#owner && entry.claim.until > now + this.#config.timeoutMs
  }

  #start (key: string, entry: OutboxEntry): void {
    this.#busy.set(entry.endpoint, (this.#busy.get(entry.endpoint) ?? 0) + 1)
    // Marked in flight by a nextAt no heap item has, until the attempt's result reschedules it.
    entry.nextAt = Number.POSITIVE_INFINITY
    const run = this.#deliver(key, entry)
      .catch(err => { this.#log('warn', 'webhook delivery failed unexpectedly', { endpoint: entry.endpoint, error: String(err) }) })
      .finally(() => {
        const n = (this.#busy.get(entry.endpoint) ?? 1) - 1
        if (n > 0) this.#busy.set(entry.endpoint, n)
        else this.#busy.delete(entry.endpoint)
        this.#running.delete(run)
        this.#wake()
      })
    this.#running.add(run)
  }

  async #deliver (key: string, entry: OutboxEntry): Promise<void> {
    const isCallback = entry.endpoint.startsWith(CALLBACK)
    const hook = isCallback ? undefined : this.#webhooks.get(entry.endpoint)
    if (!isCallback && (hook === undefined || !hook.enabled)) {
      // Deleted or disabled since: nothing to send it to.
      await this.#settle(key, entry, undefined)
      return
    }
    const url = hook?.url ?? entry.url as string
    const secret = hook?.secret ?? await this.#webhooks.callbackSecret(entry.tenant)
    const { event } = entry
    const body = JSON.stringify({ type: event.topic, timestamp: event.time, data: event })
    const result = await this.#poster.post(url, body, signedHeaders(secret, event.id, body), this.#abort.signal)
    if (this.#abort.signal.aborted) return
    entry.attempt++
    const now = this.#clock.now()
    const base = { id: this.#logIds.next(now), messageId: event.id, seq: event.seq, topic: event.topic, attempt: entry.attempt, at: new Date(now).toISOString(), ms: result.ms }
    const detail = { ...(result.status !== undefined ? { status: result.status } : {}), ...(result.error !== undefined ? { error: result.error } : {}) }
    const fields = { endpoint: entry.endpoint, messageId: event.id, topic: event.topic, attempt: entry.attempt, ...detail }
    if (result.status !== undefined && result.status >= 200 && result.status < 300) {
      await this.#settle(key, entry, { ...base, outcome: 'delivered', ...detail })
      this.#log('debug', 'webhook delivered', fields)
    } else if (result.status === 410) {
      await this.#settle(key, entry, { ...base, outcome: 'gone', ...detail })
      await this.#gone(entry, hook !== undefined ? `${url} answered 410 Gone` : '')
      this.#log('info', 'webhook endpoint gone: deliveries to it stopped', fields)
    } else if (result.refused === true) {
      await this.#settle(key, entry, { ...base, outcome: 'refused', ...detail })
      this.#log('warn', 'webhook address refused', fields)
    } else if (entry.attempt > this.#config.retryScheduleMs.length) {
      await this.#settle(key, entry, { ...base, outcome: 'failed', ...detail })
      this.#log('warn', 'webhook delivery given up', fields)
    } else {
      // Dropped while in flight (its webhook deleted or gone): not put back.
      if (this.#entries.get(key) !== entry) return
      const delay = result.retryAfterMs !== undefined ? Math.min(result.retryAfterMs, MAX_RETRY_AFTER_MS) : this.#backoff(entry.attempt)
      entry.nextAt = now + delay
      // Held through the wait: a dead replica's retries are taken over once they fall due and the claim lapses.
      if (this.#claims !== undefined) entry.claim = { owner: this.#owner, until: entry.nextAt + this.#config.claimMs }
      const log: DeliveryLogEntry = { ...base, outcome: 'retrying', ...detail, nextAttemptAt: new Date(entry.nextAt).toISOString() }
      await this.#store.writeAux([{ type: 'put', key, value: entry }, ...this.#logOps(entry, log)], { sync: false })
      this.#due.push({ key, nextAt: entry.nextAt, seq: event.seq })
      this.#log('debug', 'webhook delivery will be retried', { ...fields, retryInMs: delay })
    }
  }

  /** Removes a finished delivery from the outbox, logging its last attempt (not synced: a lost removal only means one more delivery). */
  async #settle (key: string, entry: OutboxEntry, log: DeliveryLogEntry | undefined): Promise<void> {
    this.#entries.delete(key)
    await this.#store.writeAux([{ type: 'del', key }, ...(log !== undefined ? this.#logOps(entry, log) : [])], { sync: false })
  }

  #logOps (entry: OutboxEntry, log: DeliveryLogEntry): AuxOp[] {
    // Callbacks have no log of their own: they are one transfer's, and the process log has them.
    if (entry.endpoint.startsWith(CALLBACK)) return []
    return [{ type: 'put', key: keys.delivery(entry.endpoint, log.id), value: log }]
  }

  /** The endpoint answered 410 Gone: a webhook is disabled, a callback dropped; either way its pending deliveries go. */
  async #gone (entry: OutboxEntry, reason: string): Promise<void> {
    if (!entry.endpoint.startsWith(CALLBACK)) await this.#webhooks.disable(entry.endpoint, reason)
    await this.dropEndpoint(entry.endpoint)
  }

  /** Forgets every pending delivery to an endpoint (deleted, disabled or gone). */
  async dropEndpoint (endpoint: string): Promise<number> {
    const doomed = [...this.#entries].filter(([, e]) => e.endpoint === endpoint).map(([key]) => key)
    for (const key of doomed) this.#entries.delete(key)
    for (let i = 0; i < doomed.length; i += 500) {
      await this.#store.writeAux(doomed.slice(i, i + 500).map(key => ({ type: 'del', key })), { sync: false })
    }
    return doomed.length
  }

  /** The newest delivery attempts to a webhook, newest first. */
  async deliveries (webhookId: string, limit: number): Promise<DeliveryLogEntry[]> {
    const rows = await this.#store.readAux({ gt: `d!${webhookId}!`, lt: `d!${webhookId}~`, reverse: true, limit })
    return rows.map(([, value]) => value as DeliveryLogEntry)
  }

  /** Pending deliveries to one endpoint (for status and tests). */
  pendingFor (endpoint: string): OutboxEntry[] {
    return [...this.#entries.values()].filter(e => e.endpoint === endpoint)
  }

  /** Deletes a webhook's whole delivery log, in batches. */
  async deleteLog (webhookId: string, signal?: AbortSignal): Promise<void> {
    while (true) {
      const rows = await this.#store.readAux({ gt: `d!${webhookId}!`, lt: `d!${webhookId}~`, limit: 500 })
      if (rows.length === 0) return
      await this.#store.writeAux(rows.map(([key]) => ({ type: 'del', key })), { sync: false })
      if (signal !== undefined) await pause(signal)
    }
  }

  /** Keeps the newest `logSize` entries of each webhook's delivery log (run by the retention job). */
  async trimLogs (signal: AbortSignal): Promise<number> {
    let deleted = 0
    for (const hook of this.#webhooks.all()) {
      const rows = await this.#store.readAux({ gt: `d!${hook.id}!`, lt: `d!${hook.id}~`, reverse: true, limit: this.#config.logSize + 1000 })
      const doomed = rows.slice(this.#config.logSize)
      if (doomed.length > 0) {
        await this.#store.writeAux(doomed.map(([key]) => ({ type: 'del', key })), { sync: false })
        deleted += doomed.length
      }
      await pause(signal)
    }
    return deleted
  }

  #backoff (attempt: number): number {
    const base = this.#config.retryScheduleMs[attempt - 1]
    const j = this.#config.jitter
    return Math.max(0, Math.round(base * (1 - j + 2 * j * Math.random())))
  }
}
