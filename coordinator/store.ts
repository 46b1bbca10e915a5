import { EventEmitter } from 'node:events'
import { Level } from 'level'
import { InvalidArgumentError, NotFoundError, StaccatoError, isValidAgentName } from '../mesh/index.ts'
import { createIdGenerator } from './ids.ts'
import { TERMINAL_STATES, canTransition } from './model.ts'
import type { AgentRecord, StoreEvent, TransferInput, TransferRecord, TransferState } from './model.ts'
import { InvalidStateError } from './store-errors.ts'
import { TransferIndex } from './store-index.ts'
import type { ListPage, ListQuery } from './store-index.ts'
import { prepareInput } from './store-input.ts'
import { keys, range } from './store-keys.ts'
import { nextProgress, restartProgress } from './store-progress.ts'
import type { ProgressReport } from './store-progress.ts'

export { InvalidStateError } from './store-errors.ts'
export type { ListPage, ListQuery } from './store-index.ts'
export type { ProgressReport } from './store-progress.ts'

export interface StoreEvents {
  transition: [rec: TransferRecord, from: TransferState]
  progress: [rec: TransferRecord]
  agent: [rec: AgentRecord]
  created: [rec: TransferRecord]
  removed: [rec: TransferRecord]
}

export interface CreateOptions { tenant: string, idempotencyKey?: string, now?: number }
export interface TransitionOptions { from?: TransferState[], now?: number }

type BatchOp = { type: 'put', key: string, value: unknown } | { type: 'del', key: string }

/** Fields a transition patch may not change. */
const FIXED = ['id', 'tenant', 'state', 'source', 'destination', 'agents', 'createdAt'] as const

/**
 * Transfers, agents and the event log, in LevelDB with everything also held
 * in memory. LevelDB is the source of truth: open() rebuilds memory from it.
 *
 * Writes run one at a time through a single chain, so a transition always
 * checks the state that is on disk, and a progress write can never put back
 * a state that a transition just replaced. Memory changes only after the
 * batch is written, and events are emitted after that.
 */
export class TransferStore extends EventEmitter<StoreEvents> {
  readonly #db: Level<string, unknown>
  readonly #index = new TransferIndex()
  readonly #agents = new Map<string, AgentRecord>()
  readonly #transferIds = createIdGenerator('tr_')
  readonly #eventIds = createIdGenerator('ev_')
  #seq = 0
  #chain: Promise<unknown> = Promise.resolve()
  #closed = false

  private constructor (db: Level<string, unknown>) {
    super()
    this.#db = db
  }

  static async open (dir: string): Promise<TransferStore> {
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' })
    await db.open()
    const store = new TransferStore(db)
    try {
      await store.#load()
    } catch (err) {
      await db.close()
      throw err
    }
    return store
  }

  async #load (): Promise<void> {
    this.#index.load(await this.#readTransfers())
    const lastId = this.#index.lastId()
    if (lastId !== undefined) this.#transferIds.seed(lastId)
    for (const agent of await this.#db.values({ ...range('a') }).all() as AgentRecord[]) {
      this.#agents.set(agent.name, agent)
    }
    const [lastEvent] = await this.#db.values({ ...range('e'), reverse: true, limit: 1 }).all() as StoreEvent[]
    const saved = await this.#db.get(keys.seq) as number | undefined
    this.#seq = Math.max(saved ?? 0, lastEvent?.seq ?? 0)
    if (lastEvent !== undefined) this.#eventIds.seed(lastEvent.id)
  }

  /**
   * Reads in batches rather than with all(): with 100,000 records that keeps
   * the peak (and so the resident size V8 keeps afterwards) about 80 MiB lower.
   * Strings that repeat across records are shared, as they are in records
   * made by create().
   */
  async #readTransfers (): Promise<TransferRecord[]> {
    const records: TransferRecord[] = []
    const pool = new Map<string, string>()
    const intern = (text: string): string => {
      const shared = pool.get(text)
      if (shared !== undefined) return shared
      pool.set(text, text)
      return text
    }
    const it = this.#db.values({ ...range('t') })
    try {
      while (true) {
        const batch = await it.nextv(1000) as TransferRecord[]
        if (batch.length === 0) break
        for (const rec of batch) {
          rec.tenant = intern(rec.tenant)
          rec.state = intern(rec.state) as TransferState
          rec.agents = rec.agents.map(intern)
          for (const key of Object.keys(rec.labels)) rec.labels[key] = intern(rec.labels[key])
          if (rec.updatedAt === rec.createdAt) rec.updatedAt = rec.createdAt
          if (rec.progress.updatedAt === rec.updatedAt) rec.progress.updatedAt = rec.updatedAt
          records.push(rec)
        }
      }
    } finally {
      await it.close()
    }
    return records
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#chain
    await this.#db.close()
  }

  /** The highest event sequence number written so far. */
  get seq (): number { return this.#seq }

  get size (): number { return this.#index.size }

  create (input: TransferInput, opts: CreateOptions): Promise<{ record: TransferRecord, created: boolean }> {
    let prepared: ReturnType<typeof prepareInput>
    try {
      prepared = prepareInput(input)
    } catch (err) {
      return Promise.reject(err)
    }
    const { tenant, idempotencyKey } = opts
    return this.#exclusive(async () => {
      const idemKey = idempotencyKey !== undefined ? keys.idempotency(tenant, idempotencyKey) : undefined
      if (idemKey !== undefined) {
        const firstId = await this.#db.get(idemKey) as string | undefined
        // A key whose transfer was deleted since is free again.
        const first = firstId !== undefined ? this.#index.get(firstId) : undefined
        if (first !== undefined) return { record: first, created: false }
      }
      const now = opts.now ?? Date.now()
      const at = new Date(now).toISOString()
      const record: TransferRecord = {
        id: this.#transferIds.next(now),
        tenant,
        state: 'queued',
        source: prepared.source,
        destination: prepared.destination,
        priority: prepared.priority,
        retries: prepared.retries,
        labels: prepared.labels,
        agents: prepared.agents,
        attempt: 0,
        progress: { bytesDone: 0, rate: 0, updatedAt: at },
        createdAt: at,
        updatedAt: at
      }
      if (prepared.checksum !== undefined) record.checksum = prepared.checksum
      const event = this.#event(`transfer.${record.id}.state`, tenant, now, { from: null, to: 'queued', attempt: 0 })
      const ops: BatchOp[] = [
        { type: 'put', key: keys.transfer(record.id), value: record },
        { type: 'put', key: keys.state('queued', record.id), value: '' },
        ...this.#eventOps(event)
      ]
      if (idemKey !== undefined) ops.push({ type: 'put', key: idemKey, value: record.id })
      await this.#db.batch(ops, { sync: true })
      this.#seq = event.seq
      this.#index.put(record)
      this.#emitSafely('created', record)
      return { record, created: true }
    })
  }

  get (id: string): TransferRecord | undefined {
    return this.#index.get(id)
  }

  list (q: ListQuery): ListPage {
    if (!Number.isInteger(q.limit) || q.limit < 1) throw new InvalidArgumentError('limit: must be a positive integer')
    return this.#index.list(q)
  }

  transition (id: string, to: TransferState, patch: Partial<TransferRecord> = {}, opts: TransitionOptions = {}): Promise<TransferRecord> {
    return this.#exclusive(async () => {
      const prev = this.#require(id)
      if (opts.from !== undefined && !opts.from.includes(prev.state)) {
        throw new InvalidStateError(`transfer ${id} is ${prev.state}, not ${opts.from.join(' or ')}`)
      }
      if (!canTransition(prev.state, to)) {
        throw new InvalidStateError(`transfer ${id} cannot go from ${prev.state} to ${to}`)
      }
      const now = opts.now ?? Date.now()
      const at = new Date(now).toISOString()
      const record = withoutUndefined({ ...prev, ...patch })
      for (const field of FIXED) (record as unknown as Record<string, unknown>)[field] = prev[field]
      record.state = to
      record.updatedAt = at
      if (to === 'active' && prev.startedAt === undefined) record.startedAt = at
      if (TERMINAL_STATES.has(to)) record.finishedAt = at
      // A new attempt (or a wait in the queue) must not average its rate with the previous run.
      if ((to === 'active' || to === 'queued') && patch.progress === undefined) record.progress = restartProgress(record.progress, now)
      const data: Record<string, unknown> = { from: prev.state, to, attempt: record.attempt }
      if (patch.lastError !== undefined) data.error = patch.lastError
      const event = this.#event(`transfer.${id}.state`, record.tenant, now, data)
      await this.#db.batch([
        { type: 'put', key: keys.transfer(id), value: record },
        { type: 'del', key: keys.state(prev.state, id) },
        { type: 'put', key: keys.state(to, id), value: '' },
        ...this.#eventOps(event)
      ], { sync: true })
      this.#seq = event.seq
      this.#index.put(record)
      this.#emitSafely('transition', record, prev.state)
      return record
    })
  }

  /** Records progress reported by an agent. Not synced: losing the last second of progress on a crash is harmless. */
  setProgress (id: string, report: ProgressReport, opts: { now?: number } = {}): Promise<void> {
    if (!(report.bytesDone >= 0) || (report.bytesTotal !== undefined && !(report.bytesTotal >= 0))) {
      return Promise.reject(new InvalidArgumentError('progress: byte counts must be non-negative numbers'))
    }
    return this.#exclusive(async () => {
      const prev = this.#require(id)
      if (TERMINAL_STATES.has(prev.state)) return
      const record = { ...prev, progress: nextProgress(prev.progress, report, opts.now ?? Date.now()) }
      await this.#db.put(keys.transfer(id), record)
      this.#index.put(record)
      this.#emitSafely('progress', record)
    })
  }

  /** Deletes a finished transfer; its idempotency key, if any, may then be used again. */
  remove (id: string, opts: { now?: number } = {}): Promise<void> {
    return this.#exclusive(async () => {
      const prev = this.#require(id)
      if (!TERMINAL_STATES.has(prev.state)) {
        throw new InvalidStateError(`transfer ${id} is ${prev.state}: only a finished transfer can be deleted (cancel it first)`)
      }
      const event = this.#event(`transfer.${id}.deleted`, prev.tenant, opts.now ?? Date.now(), { state: prev.state })
      await this.#db.batch([
        { type: 'del', key: keys.transfer(id) },
        { type: 'del', key: keys.state(prev.state, id) },
        ...this.#eventOps(event)
      ], { sync: true })
      this.#seq = event.seq
      this.#index.delete(id)
      this.#emitSafely('removed', prev)
    })
  }

  inState (state: TransferState): TransferRecord[] {
    return this.#index.inState(state)
  }

  countInState (state: TransferState): number {
    return this.#index.countInState(state)
  }

  /** Queued transfers by priority (highest first), then creation order; includes those waiting for notBefore. */
  queuedInOrder (): TransferRecord[] {
    return this.#index.queued()
  }

  putAgent (rec: AgentRecord, opts: { now?: number } = {}): Promise<void> {
    if (!isValidAgentName(rec.name)) return Promise.reject(new InvalidArgumentError(`agent: '${rec.name}' is not a valid agent name`))
    const record = structuredClone(rec)
    return this.#exclusive(async () => {
      const wasOnline = this.#agents.get(record.name)?.online ?? false
      const ops: BatchOp[] = [{ type: 'put', key: keys.agent(record.name), value: record }]
      let event: StoreEvent | undefined
      if (wasOnline !== record.online) {
        event = this.#event(`agent.${record.name}.online`, '*', opts.now ?? Date.now(), { online: record.online })
        ops.push(...this.#eventOps(event))
      }
      await this.#db.batch(ops, { sync: true })
      if (event !== undefined) this.#seq = event.seq
      this.#agents.set(record.name, record)
      this.#emitSafely('agent', record)
    })
  }

  getAgent (name: string): AgentRecord | undefined {
    return this.#agents.get(name)
  }

  listAgents (): AgentRecord[] {
    return [...this.#agents.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  }

  /** Events with seq > after, oldest first, read from disk (so a change feed can start anywhere in the log). */
  async readEvents (after: number, limit: number): Promise<StoreEvent[]> {
    if (this.#closed) throw closedError()
    return await this.#db.values({ gt: keys.event(Math.max(0, after)), lt: range('e').lt, limit }).all() as StoreEvent[]
  }

  #require (id: string): TransferRecord {
    const rec = this.#index.get(id)
    if (rec === undefined) throw new NotFoundError(`no transfer '${id}'`)
    return rec
  }

  /** Builds the next event; its seq becomes current only once the batch holding it is written. */
  #event (topic: string, tenant: string, now: number, data: Record<string, unknown>): StoreEvent {
    return { seq: this.#seq + 1, id: this.#eventIds.next(now), time: new Date(now).toISOString(), topic, tenant, data }
  }

  #eventOps (event: StoreEvent): BatchOp[] {
    return [
      { type: 'put', key: keys.event(event.seq), value: event },
      { type: 'put', key: keys.seq, value: event.seq }
    ]
  }

  #exclusive<T> (fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError())
    const run = this.#chain.then(fn)
    this.#chain = run.catch(() => {})
    return run
  }

  /**
   * A throwing listener must not turn a committed write into a rejected call:
   * the caller would retry something that already happened. Its error is
   * rethrown on its own tick, where it surfaces as an uncaught exception.
   */
  #emitSafely<K extends keyof StoreEvents> (name: K, ...args: StoreEvents[K]): void {
    try {
      (this.emit as (n: K, ...a: StoreEvents[K]) => boolean)(name, ...args)
    } catch (err) {
      process.nextTick(() => { throw err })
    }
  }
}

function closedError (): StaccatoError {
  return new StaccatoError('unavailable', 'the transfer store is closed', true)
}

function withoutUndefined<T extends object> (obj: T): T {
  for (const key of Object.keys(obj) as Array<keyof T>) if (obj[key] === undefined) delete obj[key]
  return obj
}
