import { EventEmitter } from 'node:events'
import { Level } from 'level'
import { InvalidArgumentError, NotFoundError, Serial, StaccatoError, isValidAgentName } from '../mesh/index.ts'
import { createIdGenerator } from './ids.ts'
import { TERMINAL_STATES, canTransition } from './model.ts'
import type { AgentRecord, StoreEvent, TransferInput, TransferRecord, TransferState } from './model.ts'
import { InvalidStateError } from './store-errors.ts'
import { TransferIndex } from './store-index.ts'
import type { ListPage, ListQuery } from './store-index.ts'
import { prepareInput } from './store-input.ts'
import { WriteAhead } from './store-ahead.ts'
import { GroupCommit } from './store-commit.ts'
import { isAuxKey, keys, range } from './store-keys.ts'
import { newRecord, progressData, progressed, transitioned, updated, withoutPieces } from './store-records.ts'
import type { ProgressReport } from './store-progress.ts'

import type { AuxOp, EventFanout } from './store-aux.ts'
import type { CoordinatorStore, StoreEvents, StoreOptions } from './store-contract.ts'
import type { CreateOptions, TransitionOptions } from './store-transfers.ts'
import { chunkedTreeFile, spreadChunks, treeFileRow } from './store-tree-files.ts'
import type { ChunkedTreeFile, StoredTreeFile, TreeFilePage, TreeFileQuery, TreeFileRow } from './store-tree-files.ts'

export { InvalidStateError } from './store-errors.ts'
export type { AuxOp, AuxPut, EventFanout } from './store-aux.ts'
export type { CoordinatorStore, StoreEvents, StoreOptions } from './store-contract.ts'
export type { CreateOptions, TransitionOptions } from './store-transfers.ts'
export type { ListPage, ListQuery } from './store-index.ts'
export type { ProgressReport } from './store-progress.ts'

type BatchOp = { type: 'put', key: string, value: unknown } | { type: 'del', key: string }

// "A few seconds": progress arrives about once a second, and a subscriber wants movement, not every report.
const PROGRESS_EVENT_MS = 5000
/**
 * Event seqs reserved at a time. Unsynced events (progress) reach clients
 * before the disk; an OS crash can lose them, and without a synced reservation
 * the next start would hand their seqs to other events, which a client's
 * cursor would then skip. 10,000 costs one extra fsync per 10,000 events.
 */
const SEQ_RESERVE = 10_000

export interface LevelStoreOptions extends StoreOptions {
  /** Awaited before each group commit goes to LevelDB: tests hold a commit open with it. */
  beforeCommit?: () => Promise<void>
}

/**
 * Transfers, agents and the event log, in LevelDB with everything also held
 * in memory. LevelDB is the source of truth: open() rebuilds memory from it.
 *
 * Writes run one at a time through a single chain, so a transition always
 * checks the state every earlier write left, and a progress write can never
 * put back a state that a transition just replaced. Their batches go to disk
 * by group commit (store-commit.ts): a write's caller hears back, and its
 * events are emitted, only once its batch and all before it are on disk.
 * Memory has two views (store-ahead.ts): readers (get, list, the queue,
 * agents, seq) see a change once its batch is on disk; the writes see the
 * changes of the writes before them at once.
 */
export class LevelTransferStore extends EventEmitter<StoreEvents> implements CoordinatorStore {
  readonly #db: Level<string, unknown>
  readonly #commits: GroupCommit
  /** Emits of the write in progress, held until its batch is on disk. */
  #deferred: Array<() => void> | undefined
  /** What is on disk. */
  readonly #index = new TransferIndex()
  readonly #agents = new Map<string, AgentRecord>()
  /** What writes changed that is not on disk yet. */
  readonly #aheadTransfers = new WriteAhead<TransferRecord>()
  readonly #aheadAgents = new WriteAhead<AgentRecord>()
  readonly #transferIds = createIdGenerator('tr_')
  readonly #eventIds = createIdGenerator('ev_')
  #seq = 0
  /** The highest seq on disk. */
  #committedSeq = 0
  /** Seqs up to this one may have been announced; it is on disk (synced) before any of them is. */
  #reserved = 0
  #writes = new Serial()
  #closed = false
  #fanout: EventFanout | undefined
  readonly #progressEventMs: number
  /** When each running transfer last had a progress event. */
  readonly #progressEventAt = new Map<string, number>()
  /** Each tree transfer's next report number (read from disk at its first report after a start). */
  readonly #treeChunkNext = new Map<string, number>()
  /** Every event up to this seq has been deleted by retention. */
  #trimmed = 0
  /** Events built by the write in progress, announced when it ends. */
  #unannounced: StoreEvent[] = []

  private constructor (db: Level<string, unknown>, opts: LevelStoreOptions) {
    super()
    this.#commits = new GroupCommit(db, {
      committed: gen => {
        this.#aheadTransfers.commit(gen)
        this.#aheadAgents.commit(gen)
      },
      beforeWrite: opts.beforeCommit
    })
    this.#db = this.#commits.view()
    this.#progressEventMs = opts.progressEventMs ?? PROGRESS_EVENT_MS
  }

  static async open (dir: string, opts: LevelStoreOptions = {}): Promise<LevelTransferStore> {
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' })
    await db.open()
    const store = new LevelTransferStore(db, opts)
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
    this.#reserved = await this.#db.get(keys.seqReserved) as number | undefined ?? 0
    // After a clean close the reservation equals the last seq; after an OS crash it lies past
    // every seq that unsynced (lost) events may have shown to clients, which are never reused.
    this.#seq = Math.max(saved ?? 0, lastEvent?.seq ?? 0, this.#reserved)
    this.#committedSeq = this.#seq
    if (lastEvent !== undefined) this.#eventIds.seed(lastEvent.id)
    this.#trimmed = await this.#db.get(keys.trimmed) as number | undefined ?? 0
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
          // A store written before the piece list had its own key keeps it inline.
          if (rec.manifest !== undefined && rec.manifest.pieces.length === 0) rec.manifest.pieces = await this.#db.get(keys.pieces(rec.id)) as string[] | undefined ?? []
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
    await this.#writes.idle()
    // A clean stop: the next start numbers on from the last seq, with no gap.
    // Without it the next start takes the crash path: it numbers on past the last reservation, a gap in seqs but never a reused one.
    await this.#db.put(keys.seqReserved, this.#seq, { sync: true }).catch(() => {})
    await this.#db.close()
  }

  /** The highest event sequence number on disk. */
  get seq (): number { return this.#committedSeq }

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
        const first = firstId !== undefined ? this.#ahead(firstId) : undefined
        if (first !== undefined) return { record: first, created: false }
      }
      const now = opts.now ?? Date.now()
      const record = newRecord(prepared, this.#transferIds.next(now), tenant, now)
      const event = this.#event(`transfer.${record.id}.state`, tenant, now, { from: null, to: 'queued', attempt: 0 })
      const ops: BatchOp[] = [
        { type: 'put', key: keys.transfer(record.id), value: withoutPieces(record) },
        { type: 'put', key: keys.state('queued', record.id), value: '' },
        ...this.#eventOps(event, record)
      ]
      if (idemKey !== undefined) ops.push({ type: 'put', key: idemKey, value: record.id })
      await this.#db.batch(ops, { sync: true })
      this.#wroteSeq(event.seq)
      this.#putTransfer(record)
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
      const { record, data } = transitioned(prev, to, patch, now)
      const event = this.#event(`transfer.${id}.state`, record.tenant, now, data)
      await this.#db.batch([
        { type: 'put', key: keys.transfer(id), value: withoutPieces(record) },
        { type: 'del', key: keys.state(prev.state, id) },
        { type: 'put', key: keys.state(to, id), value: '' },
        ...this.#eventOps(event, record)
      ], { sync: true })
      this.#wroteSeq(event.seq)
      this.#putTransfer(record)
      if (TERMINAL_STATES.has(to)) this.#progressEventAt.delete(id)
      this.#emitSafely('transition', record, prev.state)
      return record
    })
  }

  /**
   * Changes a record without changing its state (a distribution's manifest or
   * one destination's state), with an event on `topic`, in one synced batch.
   * `change` may return undefined: then nothing is written, no event either,
   * and update resolves with undefined — so a change that must happen once
   * (a destination's outcome delivered twice) is decided in the write itself.
   */
  update (id: string, change: (prev: TransferRecord) => Pick<Partial<TransferRecord>, 'destinations' | 'manifest' | 'waiting'> | undefined, topic: string, data: Record<string, unknown>, opts: { now?: number } = {}): Promise<TransferRecord | undefined> {
    return this.#exclusive(async () => {
      const prev = this.#require(id)
      const now = opts.now ?? Date.now()
      // The change is computed from the record as it is in the write chain, so concurrent updates never lose each other.
      const patch = change(prev)
      if (patch === undefined) return undefined
      const record = updated(prev, patch, now)
      const event = this.#event(topic, record.tenant, now, data)
      const ops: BatchOp[] = [{ type: 'put', key: keys.transfer(id), value: withoutPieces(record) }, ...this.#eventOps(event, record)]
      // Written once, with the manifest; every later write of the record leaves it out.
      if (record.manifest !== prev.manifest && record.manifest !== undefined) ops.push({ type: 'put', key: keys.pieces(id), value: record.manifest.pieces })
      await this.#db.batch(ops, { sync: true })
      this.#wroteSeq(event.seq)
      this.#putTransfer(record)
      this.#emitSafely('progress', record)
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
      const now = opts.now ?? Date.now()
      const record = progressed(prev, report, now)
      const last = this.#progressEventAt.get(id)
      if (this.#progressEventMs > 0 && (last === undefined || now - last >= this.#progressEventMs || now < last)) {
        const event = this.#event(`transfer.${id}.progress`, record.tenant, now, progressData(record))
        // Unsynced like the progress itself. A later synced batch flushes it too; only an OS crash can lose a trailing one.
        const ops = [{ type: 'put' as const, key: keys.transfer(id), value: withoutPieces(record) }, ...this.#eventOps(event, record)]
        await this.#db.batch(ops, { sync: reserves(ops) })
        this.#wroteSeq(event.seq)
        this.#progressEventAt.set(id, now)
        this.#putTransfer(record)
        this.#emitSafely('progress', record)
        return
      }
      await this.#db.put(keys.transfer(id), withoutPieces(record))
      this.#putTransfer(record)
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
        { type: 'del', key: keys.pieces(id) },
        { type: 'del', key: keys.state(prev.state, id) },
        ...(await this.#db.keys(keys.treeFiles(id)).all()).map(key => ({ type: 'del' as const, key })),
        ...(await this.#db.keys(keys.treeFileChunks(id)).all()).map(key => ({ type: 'del' as const, key })),
        ...this.#eventOps(event, prev)
      ], { sync: true })
      this.#wroteSeq(event.seq)
      this.#aheadTransfers.stage(id, null, this.#commits.ticket(), () => { this.#index.delete(id) })
      this.#progressEventAt.delete(id)
      this.#treeChunkNext.delete(id)
      this.#emitSafely('removed', prev)
    })
  }

  inState (state: TransferState): TransferRecord[] {
    return this.#index.inState(state)
  }

  putTreeFiles (id: string, rows: readonly TreeFileRow[]): Promise<void> {
    return this.#exclusive(async () => {
      this.#require(id)
      if (rows.length === 0) return
      const n = this.#treeChunkNext.get(id) ?? await this.#lastTreeChunk(id) + 1
      this.#treeChunkNext.set(id, n + 1)
      // One LevelDB entry per report, not one per file: a per-file entry was a third of the
      // coordinator's CPU during a tree of small files (docs/benchmarks.md, #15 tenth session).
      // A listing spreads the reports into per-path rows first (#spreadTreeChunks).
      // Not synced: a row lost to an OS crash is reported again by the next attempt, or missing from a listing only.
      await this.#db.put(keys.treeFileChunk(id, n), rows.map(chunkedTreeFile))
    })
  }

  /** The number of the transfer's last stored report (0 if none): after a restart, numbering goes on from there. */
  async #lastTreeChunk (id: string): Promise<number> {
    const [last] = await this.#db.keys({ ...keys.treeFileChunks(id), reverse: true, limit: 1 }).all()
    return last === undefined ? 0 : Number(last.slice(last.lastIndexOf('!') + 1))
  }

  /** Turns a transfer's stored reports into per-path rows, oldest first, a bounded number of reports at a time. */
  async #spreadTreeChunks (id: string): Promise<void> {
    // A report holds at most 256 rows (treeFiles' maxItems in mesh/control-methods.ts, ROWS_PER_PUT): 64 reports make batches of ≤ 16,384 puts.
    const perBatch = 64
    let full = true
    while (full) {
      full = await this.#exclusive(async () => {
        const chunks = await this.#db.iterator({ ...keys.treeFileChunks(id), limit: perBatch }).all() as Array<[string, ChunkedTreeFile[]]>
        if (chunks.length > 0) await this.#db.batch(spreadChunks(chunks, path => keys.treeFile(id, path)))
        return chunks.length === perBatch
      })
    }
  }

  async listTreeFiles (id: string, query: TreeFileQuery): Promise<TreeFilePage> {
    await this.#spreadTreeChunks(id)
    const prefix = keys.treeFile(id, '').length
    const items: TreeFileRow[] = []
    let last: string | undefined
    for await (const [key, value] of this.#db.iterator(keys.treeFiles(id, query.after))) {
      last = key.slice(prefix)
      const row = treeFileRow(last, value as StoredTreeFile)
      if (query.state !== undefined && row.state !== query.state) continue
      items.push(row)
      if (items.length >= query.limit) return { items, next: row.path }
    }
    return { items }
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
      const wasOnline = this.#aheadAgent(record.name)?.online ?? false
      const ops: BatchOp[] = [{ type: 'put', key: keys.agent(record.name), value: record }]
      let event: StoreEvent | undefined
      if (wasOnline !== record.online) {
        event = this.#event(`agent.${record.name}.online`, '*', opts.now ?? Date.now(), { online: record.online })
        ops.push(...this.#eventOps(event, undefined))
      }
      await this.#db.batch(ops, { sync: true })
      if (event !== undefined) this.#wroteSeq(event.seq)
      this.#aheadAgents.stage(record.name, record, this.#commits.ticket(), () => { this.#agents.set(record.name, record) })
      this.#emitSafely('agent', record)
    })
  }

  /** Forgets an agent (decommissioned, or to enroll it again with another key); an `agent.<name>.removed` event says so. */
  removeAgent (name: string, opts: { now?: number } = {}): Promise<boolean> {
    return this.#exclusive(async () => {
      if (this.#aheadAgent(name) === undefined) return false
      const event = this.#event(`agent.${name}.removed`, '*', opts.now ?? Date.now(), { name })
      await this.#db.batch([{ type: 'del', key: keys.agent(name) }, ...this.#eventOps(event, undefined)], { sync: true })
      this.#wroteSeq(event.seq)
      this.#aheadAgents.stage(name, null, this.#commits.ticket(), () => { this.#agents.delete(name) })
      return true
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

  /** Every event with a seq up to this one has been deleted by retention: a cursor below it has a gap. */
  get trimmedThrough (): number { return this.#trimmed }

  /** Installs (or removes) the function whose records join every event's batch. */
  setFanout (fanout: EventFanout | undefined): void {
    this.#fanout = fanout
  }

  /** Writes an event that goes with no state change (e.g. `transfer.<id>.stalled`). */
  appendEvent (topic: string, tenant: string, data: Record<string, unknown>, opts: { record?: TransferRecord, sync?: boolean, now?: number } = {}): Promise<StoreEvent> {
    return this.#exclusive(async () => {
      const event = this.#event(topic, tenant, opts.now ?? Date.now(), data)
      const ops = this.#eventOps(event, opts.record)
      await this.#db.batch(ops, { sync: opts.sync !== false || reserves(ops) })
      this.#wroteSeq(event.seq)
      return event
    })
  }

  /**
   * Deletes the oldest events, through `throughSeq` but at most `limit` of
   * them (retention calls it in small batches so that writes are never held
   * up long), and returns how far the log is now trimmed.
   */
  trimEvents (throughSeq: number, limit: number): Promise<number> {
    return this.#exclusive(async () => {
      const through = Math.min(throughSeq, this.#seq)
      if (through <= this.#trimmed) return this.#trimmed
      const doomed = await this.#db.keys({ gt: keys.event(this.#trimmed), lte: keys.event(through), limit }).all()
      const last = doomed.length === limit ? Number(doomed[doomed.length - 1].slice(2)) : through
      await this.#db.batch([
        ...doomed.map((key): BatchOp => ({ type: 'del', key })),
        { type: 'put', key: keys.trimmed, value: last }
      ], { sync: true })
      this.#trimmed = last
      return last
    })
  }

  /**
   * Writes records of the aux ranges (webhooks, outbox, delivery log,
   * secrets), in order with every other write. `onWritten` runs before any
   * later write starts: a webhook added there sees exactly the events after it.
   */
  writeAux (ops: AuxOp[], opts: { sync: boolean, onWritten?: () => void }): Promise<void> {
    for (const op of ops) requireAux(op.key)
    return this.#exclusive(async () => {
      if (ops.length > 0) await this.#db.batch(ops, { sync: opts.sync })
      opts.onWritten?.()
    })
  }

  /** Reads records of one aux range, e.g. `{ ...range('w') }`. */
  async readAux (r: { gt: string, lt: string, reverse?: boolean, limit?: number }): Promise<Array<[string, unknown]>> {
    if (this.#closed) throw closedError()
    requireAux(r.gt, true)
    requireAux(r.lt, true)
    return await this.#db.iterator({ gt: r.gt, lt: r.lt, reverse: r.reverse ?? false, limit: r.limit ?? -1 }).all()
  }

  /** A transfer as the writes so far left it (on disk or not): what the next write checks. */
  #ahead (id: string): TransferRecord | undefined {
    return this.#aheadTransfers.read(id, this.#index.get(id))
  }

  #aheadAgent (name: string): AgentRecord | undefined {
    return this.#aheadAgents.read(name, this.#agents.get(name))
  }

  #require (id: string): TransferRecord {
    const rec = this.#ahead(id)
    if (rec === undefined) throw new NotFoundError(`no transfer '${id}'`)
    return rec
  }

  /** Called right after the batch that holds the change: readers see it once that batch is on disk. */
  #putTransfer (record: TransferRecord): void {
    this.#aheadTransfers.stage(record.id, record, this.#commits.ticket(), () => { this.#index.put(record) })
  }

  #wroteSeq (seq: number): void {
    this.#seq = seq
    this.#aheadTransfers.then(this.#commits.ticket(), () => { this.#committedSeq = Math.max(this.#committedSeq, seq) })
  }

  /** Builds the next event; its seq becomes current only once the batch holding it is written. */
  #event (topic: string, tenant: string, now: number, data: Record<string, unknown>): StoreEvent {
    return { seq: this.#seq + 1, id: this.#eventIds.next(now), time: new Date(now).toISOString(), topic, tenant, data }
  }

  /**
   * The ops that write an event (and its fan-out). The event is announced
   * ('event') when the write that holds it ends, if its seq was committed
   * by then; so every writer announces its events without having to.
   */
  #eventOps (event: StoreEvent, record: TransferRecord | undefined): BatchOp[] {
    this.#unannounced.push(event)
    const ops: BatchOp[] = [
      { type: 'put', key: keys.event(event.seq), value: event },
      { type: 'put', key: keys.seq, value: event.seq }
    ]
    if (event.seq > this.#reserved) {
      // The batch carrying this is synced (see reserves()): one fsync per SEQ_RESERVE events.
      this.#reserved = event.seq + SEQ_RESERVE
      ops.push({ type: 'put', key: keys.seqReserved, value: this.#reserved })
    }
    if (this.#fanout !== undefined) {
      for (const { key, value } of this.#fanout(event, record)) {
        requireAux(key)
        ops.push({ type: 'put', key, value })
      }
    }
    return ops
  }

  /**
   * Runs one write after every earlier one. The next write starts as soon as
   * this one has run (its batch queued for the group commit), but this one's
   * caller hears back, and its notifications go out, only once everything it
   * wrote or saw is on disk.
   */
  #exclusive<T> (fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError())
    const ran = this.#writes.run(async () => {
      const emits: Array<() => void> = []
      this.#deferred = emits
      let outcome: { ok: true, value: T } | { ok: false, error: unknown }
      try {
        outcome = { ok: true, value: await fn() }
      } catch (error) {
        outcome = { ok: false, error }
      } finally {
        this.#deferred = undefined
      }
      const events = this.#unannounced
      this.#unannounced = []
      return { outcome, emits, events, ticket: this.#commits.ticket() }
    })
    return ran.then(async ({ outcome, emits, events, ticket }) => {
      await this.#commits.durable(ticket)
      for (const emit of emits) emit()
      this.#announce(events)
      if (!outcome.ok) throw outcome.error
      return outcome.value
    })
  }

  /** Emits 'event' for each event written by a write that is now on disk; one whose batch failed (seq not committed) is dropped. */
  #announce (events: StoreEvent[]): void {
    for (const event of events) if (event.seq <= this.#seq) this.#emitNow('event', event)
  }

  /**
   * A throwing listener must not turn a committed write into a rejected call:
   * the caller would retry something that already happened. Its error is
   * rethrown on its own tick, where it surfaces as an uncaught exception.
   */
  #emitSafely<K extends keyof StoreEvents> (name: K, ...args: StoreEvents[K]): void {
    if (this.#deferred !== undefined) this.#deferred.push(() => this.#emitNow(name, ...args))
    else this.#emitNow(name, ...args)
  }

  #emitNow<K extends keyof StoreEvents> (name: K, ...args: StoreEvents[K]): void {
    try {
      (this.emit as (n: K, ...a: StoreEvents[K]) => boolean)(name, ...args)
    } catch (err) {
      process.nextTick(() => { throw err })
    }
  }
}

/** A batch that moves the seq reservation must be synced before its events are announced. */
function reserves (ops: BatchOp[]): boolean {
  return ops.some(op => op.key === keys.seqReserved)
}

function requireAux (key: string, bound = false): void {
  if (!isAuxKey(key, bound)) throw new TypeError(`'${key}' is not in an aux range`)
}

function closedError (): StaccatoError {
  return new StaccatoError('unavailable', 'the transfer store is closed', true)
}

/**
 * Code that takes a store names it `TransferStore` (the contract); the value
 * of that name opens the embedded LevelDB store, as it always did.
 */
export type TransferStore = CoordinatorStore
export const TransferStore = LevelTransferStore
