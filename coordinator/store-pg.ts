import { EventEmitter } from 'node:events'
import pg from 'pg'
import { InvalidArgumentError, NotFoundError, Serial, StaccatoError, isValidAgentName } from '../mesh/index.ts'
import { createIdGenerator } from './ids.ts'
import { TERMINAL_STATES, canTransition } from './model.ts'
import type { AgentRecord, StoreEvent, TransferInput, TransferRecord, TransferState } from './model.ts'
import type { AuxOp, EventFanout } from './store-aux.ts'
import type { CoordinatorStore, StoreEvents, StoreOptions } from './store-contract.ts'
import { InvalidStateError } from './store-errors.ts'
import { TransferIndex } from './store-index.ts'
import type { ListPage, ListQuery } from './store-index.ts'
import { prepareInput } from './store-input.ts'
import { isAuxKey } from './store-keys.ts'
import { EVENTS_CHANNEL, LOCKS, LOCK_CLASS, migrate } from './store-pg-schema.ts'
import type { ProgressReport } from './store-progress.ts'
import { newRecord, progressData, progressed, transitioned, updated, withoutPieces } from './store-records.ts'
import type { CreateOptions, TransitionOptions } from './store-transfers.ts'
import { storedTreeFile, treeFileRow } from './store-tree-files.ts'
import type { StoredTreeFile, TreeFilePage, TreeFileQuery, TreeFileRow } from './store-tree-files.ts'
import { pgTokenRecords } from './token-records.ts'
import type { TokenRecords } from './token-records.ts'

// The same rate as the LevelDB store (store.ts): a subscriber wants movement, not every report.
const PROGRESS_EVENT_MS = 5000
// Writes use one connection at a time (below); the rest serve reads (feed, SSE, aux). 10 is pg's default.
const POOL_SIZE = 10
/** Writes in one commit at most: bounds how long a group holds the events lock, and what one failed commit loses. */
const GROUP_MAX = 256

/** Writes that commit together: one transaction on one connection. */
interface Group {
  client: pg.PoolClient
  writes: number
  /** Some write needs a synchronous commit. */
  sync: boolean
  eventsLocked: boolean
  lastSeq: number
  committed: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

/** One write's transaction: its queries, its events, and what to do once it has committed. */
interface Tx {
  query: (text: string, values?: unknown[]) => Promise<pg.QueryResult>
  event: (topic: string, tenant: string, now: number, data: Record<string, unknown>, record: TransferRecord | undefined) => Promise<StoreEvent>
  /** Runs after COMMIT, still in the write chain (memory follows the database). */
  committed: (fn: () => void) => void
  /** Notifications, sent once the write chain has moved on. */
  emit: <K extends keyof StoreEvents>(name: K, ...args: StoreEvents[K]) => void
}

/**
 * The store on PostgreSQL (`--store postgres://…`). Like the LevelDB store it
 * keeps every transfer and agent in memory (the scheduler reads the whole
 * queue on every pass) and the database is the source of truth: open()
 * loads memory from it.
 *
 * Writes commit in groups (one transaction, each write behind a savepoint:
 * see #write); a state change, its event and the event's webhook outbox rows
 * always commit together. Event seqs come from a sequence, taken inside the
 * transaction after an advisory transaction lock (LOCKS.events), so
 * transactions that write events commit in seq order: a reader that has
 * seen seq n never later finds a new event below n, whichever process wrote
 * it. Seqs may skip numbers (a rolled-back transaction's nextval is not
 * returned). A transaction holding events runs with synchronous commit; only
 * a group of progress reports without events commits asynchronously, so a crash can
 * never lose an event whose seq a reader has seen.
 *
 * Every commit with events notifies EVENTS_CHANNEL; a store that hears of
 * events it did not write (another process on the same database) reads them,
 * reloads the records they are about and announces them ('event'), so feed
 * and SSE readers are woken by LISTEN/NOTIFY, not by polling.
 */
export class PgTransferStore extends EventEmitter<StoreEvents> implements CoordinatorStore {
  readonly #pool: pg.Pool
  #listener: pg.Client | undefined
  readonly #index = new TransferIndex()
  readonly #agents = new Map<string, AgentRecord>()
  readonly #transferIds = createIdGenerator('tr_')
  readonly #eventIds = createIdGenerator('ev_')
  #seq = 0
  #trimmed = 0
  #writes = new Serial()
  #closed = false
  #fanout: EventFanout | undefined
  readonly #progressEventMs: number
  readonly #progressEventAt = new Map<string, number>()
  /** The highest seq another process has announced and this one has not read yet. */
  #heard = 0
  #catchingUp = false
  #group: Group | undefined
  /** Writes handed in whose turn has not come: while there are some, the group stays open for them. */
  #waiting = 0
  #failure: StaccatoError | undefined

  private constructor (pool: pg.Pool, opts: StoreOptions) {
    super()
    this.#pool = pool
    this.#progressEventMs = opts.progressEventMs ?? PROGRESS_EVENT_MS
  }

  static async open (url: string, opts: StoreOptions = {}): Promise<PgTransferStore> {
    const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE })
    // An idle client's error (the server restarted) is reported to the query that next uses the pool; unhandled it would kill the process.
    pool.on('error', () => {})
    const store = new PgTransferStore(pool, opts)
    try {
      const client = await pool.connect()
      try {
        await migrate(client)
      } finally {
        client.release()
      }
      await store.#load()
      await store.#listen(url)
    } catch (err) {
      await store.#listener?.end().catch(() => {})
      await pool.end()
      throw unavailable(err)
    }
    return store
  }

  async #load (): Promise<void> {
    const pieces = new Map<string, string[]>()
    for (const row of (await this.#pool.query<{ id: string, pieces: string[] }>('SELECT id, pieces FROM transfer_pieces')).rows) pieces.set(row.id, row.pieces)
    const records = (await this.#pool.query<{ record: TransferRecord }>('SELECT record FROM transfers')).rows.map(r => withPieces(r.record, pieces.get(r.record.id)))
    this.#index.load(records)
    const lastId = this.#index.lastId()
    if (lastId !== undefined) this.#transferIds.seed(lastId)
    for (const row of (await this.#pool.query<{ record: AgentRecord }>('SELECT record FROM agents')).rows) this.#agents.set(row.record.name, row.record)
    const last = (await this.#pool.query<{ event: StoreEvent }>('SELECT event FROM events ORDER BY seq DESC LIMIT 1')).rows[0]?.event
    const trimmed = (await this.#pool.query<{ value: number }>('SELECT value FROM store_meta WHERE key = \'trimmed\'')).rows[0]?.value
    this.#trimmed = trimmed ?? 0
    this.#seq = Math.max(last?.seq ?? 0, this.#trimmed)
    if (last !== undefined) this.#eventIds.seed(last.id)
  }

  async #listen (url: string): Promise<void> {
    const listener = new pg.Client({ connectionString: url })
    listener.on('error', () => {})
    listener.on('notification', msg => {
      const seq = Number(msg.payload)
      if (!(seq > this.#seq) || this.#closed) return
      this.#heard = Math.max(this.#heard, seq)
      this.#catchUp()
    })
    await listener.connect()
    await listener.query(`LISTEN ${EVENTS_CHANNEL}`)
    this.#listener = listener
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#writes.idle()
    await this.#listener?.end().catch(() => {})
    await this.#pool.end()
  }

  /** The token store's records, in this database (through this store's pool: close the token store first). */
  tokenRecords (): TokenRecords {
    return pgTokenRecords(this.#pool)
  }

  get seq (): number { return this.#seq }
  get size (): number { return this.#index.size }
  get trimmedThrough (): number { return this.#trimmed }

  create (input: TransferInput, opts: CreateOptions): Promise<{ record: TransferRecord, created: boolean }> {
    let prepared: ReturnType<typeof prepareInput>
    try {
      prepared = prepareInput(input)
    } catch (err) {
      return Promise.reject(err)
    }
    const { tenant, idempotencyKey } = opts
    return this.#write(true, async tx => {
      if (idempotencyKey !== undefined) {
        const row = (await tx.query('SELECT transfer_id FROM idempotency_keys WHERE tenant = $1 AND key = $2', [tenant, idempotencyKey])).rows[0] as { transfer_id: string } | undefined
        const first = row !== undefined ? this.#index.get(row.transfer_id) : undefined
        if (first !== undefined) return { record: first, created: false }
      }
      const now = opts.now ?? Date.now()
      const record = newRecord(prepared, this.#transferIds.next(now), tenant, now)
      await tx.query('INSERT INTO transfers (id, tenant, state, record) VALUES ($1, $2, $3, $4)', [record.id, tenant, record.state, json(record)])
      if (idempotencyKey !== undefined) {
        // A key whose transfer was deleted is free again: it now names the new one.
        await tx.query('INSERT INTO idempotency_keys (tenant, key, transfer_id) VALUES ($1, $2, $3) ON CONFLICT (tenant, key) DO UPDATE SET transfer_id = EXCLUDED.transfer_id', [tenant, idempotencyKey, record.id])
      }
      await tx.event(`transfer.${record.id}.state`, tenant, now, { from: null, to: 'queued', attempt: 0 }, record)
      tx.committed(() => this.#index.put(record))
      tx.emit('created', record)
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
    return this.#write(true, async tx => {
      const prev = this.#require(id)
      if (opts.from !== undefined && !opts.from.includes(prev.state)) {
        throw new InvalidStateError(`transfer ${id} is ${prev.state}, not ${opts.from.join(' or ')}`)
      }
      if (!canTransition(prev.state, to)) throw new InvalidStateError(`transfer ${id} cannot go from ${prev.state} to ${to}`)
      const now = opts.now ?? Date.now()
      const { record, data } = transitioned(prev, to, patch, now)
      await this.#putTransfer(tx, record)
      await tx.event(`transfer.${id}.state`, record.tenant, now, data, record)
      tx.committed(() => {
        this.#index.put(record)
        if (TERMINAL_STATES.has(to)) this.#progressEventAt.delete(id)
      })
      tx.emit('transition', record, prev.state)
      return record
    })
  }

  update (id: string, change: (prev: TransferRecord) => Pick<Partial<TransferRecord>, 'destinations' | 'manifest' | 'waiting'> | undefined, topic: string, data: Record<string, unknown>, opts: { now?: number } = {}): Promise<TransferRecord | undefined> {
    return this.#write(true, async tx => {
      const prev = this.#require(id)
      const now = opts.now ?? Date.now()
      const patch = change(prev)
      if (patch === undefined) return undefined
      const record = updated(prev, patch, now)
      await this.#putTransfer(tx, record)
      if (record.manifest !== prev.manifest && record.manifest !== undefined) {
        await tx.query('INSERT INTO transfer_pieces (id, pieces) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET pieces = EXCLUDED.pieces', [id, json(record.manifest.pieces)])
      }
      await tx.event(topic, record.tenant, now, data, record)
      tx.committed(() => this.#index.put(record))
      tx.emit('progress', record)
      return record
    })
  }

  setProgress (id: string, report: ProgressReport, opts: { now?: number } = {}): Promise<void> {
    if (!(report.bytesDone >= 0) || (report.bytesTotal !== undefined && !(report.bytesTotal >= 0))) {
      return Promise.reject(new InvalidArgumentError('progress: byte counts must be non-negative numbers'))
    }
    return this.#write(false, async tx => {
      const prev = this.#require(id)
      if (TERMINAL_STATES.has(prev.state)) return
      const now = opts.now ?? Date.now()
      const last = this.#progressEventAt.get(id)
      const withEvent = this.#progressEventMs > 0 && (last === undefined || now - last >= this.#progressEventMs || now < last)
      const record = progressed(prev, report, now)
      await this.#putTransfer(tx, record)
      if (withEvent) {
        await tx.event(`transfer.${id}.progress`, record.tenant, now, progressData(record), record)
        tx.committed(() => this.#progressEventAt.set(id, now))
      }
      tx.committed(() => this.#index.put(record))
      tx.emit('progress', record)
    })
  }

  remove (id: string, opts: { now?: number } = {}): Promise<void> {
    return this.#write(true, async tx => {
      const prev = this.#require(id)
      if (!TERMINAL_STATES.has(prev.state)) {
        throw new InvalidStateError(`transfer ${id} is ${prev.state}: only a finished transfer can be deleted (cancel it first)`)
      }
      await tx.query('DELETE FROM transfers WHERE id = $1', [id])
      await tx.query('DELETE FROM transfer_pieces WHERE id = $1', [id])
      await tx.query('DELETE FROM tree_files WHERE id = $1', [id])
      await tx.query('DELETE FROM idempotency_keys WHERE transfer_id = $1', [id])
      await tx.event(`transfer.${id}.deleted`, prev.tenant, opts.now ?? Date.now(), { state: prev.state }, prev)
      tx.committed(() => {
        this.#index.delete(id)
        this.#progressEventAt.delete(id)
      })
      tx.emit('removed', prev)
    })
  }

  putTreeFiles (id: string, rows: readonly TreeFileRow[]): Promise<void> {
    return this.#write(false, async tx => {
      this.#require(id)
      if (rows.length === 0) return
      const values = rows.map((_, i) => `($1, $${2 + i * 3}, $${3 + i * 3}, $${4 + i * 3})`).join(', ')
      const params = [id, ...rows.flatMap(r => [r.path, r.state, JSON.stringify(storedTreeFile(r))])]
      await tx.query(`INSERT INTO tree_files (id, path, state, file) VALUES ${values} ON CONFLICT (id, path) DO UPDATE SET state = EXCLUDED.state, file = EXCLUDED.file`, params)
    })
  }

  async listTreeFiles (id: string, query: TreeFileQuery): Promise<TreeFilePage> {
    const params: unknown[] = [id, query.after ?? '', query.limit]
    const byState = query.state !== undefined ? ' AND state = $4' : ''
    if (query.state !== undefined) params.push(query.state)
    const { rows } = await this.#pool.query<{ path: string, file: StoredTreeFile }>(`SELECT path, file FROM tree_files WHERE id = $1 AND path > $2${byState} ORDER BY path LIMIT $3`, params)
    const items = rows.map(r => treeFileRow(r.path, r.file))
    return items.length === query.limit ? { items, next: items[items.length - 1].path } : { items }
  }

  inState (state: TransferState): TransferRecord[] { return this.#index.inState(state) }
  countInState (state: TransferState): number { return this.#index.countInState(state) }
  queuedInOrder (): TransferRecord[] { return this.#index.queued() }

  putAgent (rec: AgentRecord, opts: { now?: number } = {}): Promise<void> {
    if (!isValidAgentName(rec.name)) return Promise.reject(new InvalidArgumentError(`agent: '${rec.name}' is not a valid agent name`))
    const record = structuredClone(rec)
    return this.#write(true, async tx => {
      const wasOnline = this.#agents.get(record.name)?.online ?? false
      await tx.query('INSERT INTO agents (name, record) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record', [record.name, json(record)])
      if (wasOnline !== record.online) await tx.event(`agent.${record.name}.online`, '*', opts.now ?? Date.now(), { online: record.online }, undefined)
      tx.committed(() => this.#agents.set(record.name, record))
      tx.emit('agent', record)
    })
  }

  removeAgent (name: string, opts: { now?: number } = {}): Promise<boolean> {
    return this.#write(true, async tx => {
      if (!this.#agents.has(name)) return false
      await tx.query('DELETE FROM agents WHERE name = $1', [name])
      await tx.event(`agent.${name}.removed`, '*', opts.now ?? Date.now(), { name }, undefined)
      tx.committed(() => this.#agents.delete(name))
      return true
    })
  }

  getAgent (name: string): AgentRecord | undefined { return this.#agents.get(name) }

  listAgents (): AgentRecord[] {
    return [...this.#agents.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  }

  async readEvents (after: number, limit: number): Promise<StoreEvent[]> {
    if (this.#closed) throw closedError()
    const rows = await this.#read('SELECT event FROM events WHERE seq > $1 ORDER BY seq LIMIT $2', [Math.max(0, after), limit])
    return rows.map(r => (r as { event: StoreEvent }).event)
  }

  appendEvent (topic: string, tenant: string, data: Record<string, unknown>, opts: { record?: TransferRecord, sync?: boolean, now?: number } = {}): Promise<StoreEvent> {
    return this.#write(true, async tx => await tx.event(topic, tenant, opts.now ?? Date.now(), data, opts.record))
  }

  trimEvents (throughSeq: number, limit: number): Promise<number> {
    return this.#write(true, async tx => {
      const through = Math.min(throughSeq, this.#seq)
      if (through <= this.#trimmed) return this.#trimmed
      const deleted = (await tx.query('DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3) RETURNING seq', [this.#trimmed, through, limit])).rows.map(r => Number((r as { seq: string }).seq))
      const last = deleted.length === limit ? Math.max(...deleted) : through
      await tx.query('INSERT INTO store_meta (key, value) VALUES (\'trimmed\', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', [json(last)])
      tx.committed(() => { this.#trimmed = last })
      return last
    })
  }

  writeAux (ops: AuxOp[], opts: { sync: boolean, onWritten?: () => void }): Promise<void> {
    for (const op of ops) requireAux(op.key)
    return this.#write(opts.sync, async tx => {
      for (const op of ops) {
        if (op.type === 'put') await tx.query('INSERT INTO aux (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', [op.key, json(op.value)])
        else await tx.query('DELETE FROM aux WHERE key = $1', [op.key])
      }
      tx.committed(() => opts.onWritten?.())
    })
  }

  async readAux (r: { gt: string, lt: string, reverse?: boolean, limit?: number }): Promise<Array<[string, unknown]>> {
    if (this.#closed) throw closedError()
    requireAux(r.gt, true)
    requireAux(r.lt, true)
    const order = r.reverse === true ? 'DESC' : 'ASC'
    const rows = await this.#read(`SELECT key, value FROM aux WHERE key > $1 AND key < $2 ORDER BY key ${order} LIMIT $3`, [r.gt, r.lt, r.limit ?? null])
    return rows.map(row => { const { key, value } = row as { key: string, value: unknown }; return [key, value] })
  }

  setFanout (fanout: EventFanout | undefined): void {
    this.#fanout = fanout
  }

  async #putTransfer (tx: Tx, record: TransferRecord): Promise<void> {
    await tx.query('UPDATE transfers SET state = $2, record = $3 WHERE id = $1', [record.id, record.state, json(withoutPieces(record))])
  }

  #require (id: string): TransferRecord {
    const rec = this.#index.get(id)
    if (rec === undefined) throw new NotFoundError(`no transfer '${id}'`)
    return rec
  }

  async #read (text: string, values: unknown[]): Promise<unknown[]> {
    try {
      return (await this.#pool.query(text, values)).rows
    } catch (err) {
      throw unavailable(err)
    }
  }

  /**
   * Runs one write after every earlier one, in the current group's
   * transaction, behind a savepoint: a write that fails is rolled back alone
   * and leaves memory as it was. Memory follows each write at once (the next
   * write checks the state this one left); the group commits when no write is
   * waiting behind it (or it is GROUP_MAX long), so one commit makes many
   * writes durable, as the LevelDB store's group commit does. A caller hears
   * back, and notifications go out, once its group has committed.
   */
  #write<T> (sync: boolean, fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError())
    this.#waiting++
    const ran = this.#writes.run(async () => {
      this.#waiting--
      const outcome = await this.#runInGroup(sync, fn)
      if (this.#group !== undefined && (this.#waiting === 0 || this.#group.writes >= GROUP_MAX)) await this.#commitGroup()
      return outcome
    })
    return ran.then(async outcome => {
      if (outcome.ok) await outcome.committed
      for (const emit of outcome.emits) emit()
      for (const event of outcome.events) this.#emitNow('event', event)
      if (!outcome.ok) throw outcome.error
      return outcome.value
    })
  }

  async #runInGroup<T> (sync: boolean, fn: (tx: Tx) => Promise<T>): Promise<{ ok: true, value: T, committed: Promise<void>, emits: Array<() => void>, events: StoreEvent[] } | { ok: false, error: unknown, emits: [], events: [] }> {
    if (this.#failure !== undefined) return { ok: false, error: this.#failure, emits: [], events: [] }
    let group: Group
    try {
      group = this.#group ??= await this.#openGroup()
    } catch (err) {
      return { ok: false, error: unavailable(err), emits: [], events: [] }
    }
    const client = group.client
    const after: Array<() => void> = []
    const emits: Array<() => void> = []
    const events: StoreEvent[] = []
    const tx: Tx = {
      query: async (text, values) => await client.query(text, values),
      event: async (topic, tenant, now, data, record) => {
        // The lock is held to the group's commit: event transactions commit in seq order (see the class comment).
        const lock = group.eventsLocked ? '' : ' FROM (SELECT pg_advisory_xact_lock($1, $2)) AS l'
        const seq = Number((await client.query<{ seq: string }>(`SELECT nextval('event_seq') AS seq${lock}`, group.eventsLocked ? [] : [LOCK_CLASS, LOCKS.events])).rows[0].seq)
        group.eventsLocked = true
        const event: StoreEvent = { seq, id: this.#eventIds.next(now), time: new Date(now).toISOString(), topic, tenant, data }
        await client.query('INSERT INTO events (seq, event) VALUES ($1, $2)', [seq, json(event)])
        for (const { key, value } of this.#fanout?.(event, record) ?? []) {
          requireAux(key)
          await client.query('INSERT INTO aux (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', [key, json(value)])
        }
        events.push(event)
        return event
      },
      committed: fn => { after.push(fn) },
      emit: (name, ...args) => { emits.push(() => { this.#emitNow(name, ...args) }) }
    }
    try {
      await client.query('SAVEPOINT w')
    } catch (err) {
      return { ok: false, error: this.#fail(err), emits: [], events: [] }
    }
    // Rolling back to the savepoint releases the events lock if this write took it.
    const lockedBefore = group.eventsLocked
    let value: T
    try {
      value = await fn(tx)
      await client.query('RELEASE SAVEPOINT w')
    } catch (error) {
      group.eventsLocked = lockedBefore
      try {
        await client.query('ROLLBACK TO SAVEPOINT w')
      } catch (err) {
        this.#fail(err)
      }
      return { ok: false, error: unavailable(error), emits: [], events: [] }
    }
    for (const apply of after) apply()
    if (events.length > 0) {
      this.#seq = Math.max(this.#seq, events[events.length - 1].seq)
      group.lastSeq = this.#seq
    }
    group.sync ||= sync || events.length > 0
    group.writes++
    return { ok: true, value, committed: group.committed, emits, events }
  }

  async #openGroup (): Promise<Group> {
    const client = await this.#pool.connect()
    try {
      await client.query('BEGIN')
    } catch (err) {
      client.release(true)
      throw err
    }
    let resolve!: () => void
    let reject!: (err: unknown) => void
    const committed = new Promise<void>((res, rej) => { resolve = res; reject = rej })
    // A group whose writes all failed has nobody waiting on it; its failure still reaches later writes (#failure).
    committed.catch(() => {})
    return { client, writes: 0, sync: false, eventsLocked: false, lastSeq: 0, committed, resolve, reject }
  }

  async #commitGroup (): Promise<void> {
    const group = this.#group as Group
    this.#group = undefined
    try {
      if (group.lastSeq > 0) await group.client.query('SELECT pg_notify($1, $2)', [EVENTS_CHANNEL, String(group.lastSeq)])
      // Only a group without events may commit before its WAL is on disk (see the class comment).
      if (!group.sync) await group.client.query('SET LOCAL synchronous_commit = off')
      await group.client.query('COMMIT')
      group.client.release()
      group.resolve()
    } catch (err) {
      group.client.release(true)
      group.reject(this.#fail(err))
    }
  }

  /**
   * Memory is now ahead of the database (a group's writes are applied before
   * it commits): every later write fails until a restart reloads the store,
   * as the LevelDB store does after a failed disk write.
   */
  #fail (err: unknown): StaccatoError {
    this.#failure ??= new StaccatoError('unavailable', `the PostgreSQL store lost a write (${err instanceof Error ? err.message : String(err)}); restart the coordinator`, true, { cause: err })
    return this.#failure
  }

  /**
   * Reads events another process wrote (heard of through NOTIFY), reloads the
   * records they are about, and announces them. One catch-up at a time; it
   * runs in the write chain, so it never interleaves with a local write.
   */
  #catchUp (): void {
    if (this.#catchingUp) return
    this.#catchingUp = true
    const announced: StoreEvent[] = []
    this.#writes.run(async () => {
      this.#catchingUp = false
      while (this.#heard > this.#seq && !this.#closed) {
        const events = await this.readEvents(this.#seq, 1000)
        if (events.length === 0) break
        for (const event of events) {
          await this.#reload(event.topic)
          this.#seq = event.seq
          announced.push(event)
        }
      }
    }).catch(() => {
      // The next notification (or the next local write's catch-up) tries again.
    }).finally(() => {
      for (const event of announced) this.#emitNow('event', event)
    })
  }

  async #reload (topic: string): Promise<void> {
    const [kind, name] = topic.split('.')
    if (kind === 'transfer') {
      const row = (await this.#pool.query<{ record: TransferRecord, pieces: string[] | null }>('SELECT t.record, p.pieces FROM transfers t LEFT JOIN transfer_pieces p ON p.id = t.id WHERE t.id = $1', [name])).rows[0]
      if (row === undefined) this.#index.delete(name)
      else this.#index.put(withPieces(row.record, row.pieces ?? undefined))
    } else if (kind === 'agent') {
      const row = (await this.#pool.query<{ record: AgentRecord }>('SELECT record FROM agents WHERE name = $1', [name])).rows[0]
      if (row === undefined) this.#agents.delete(name)
      else this.#agents.set(name, row.record)
    }
  }

  /** A throwing listener must not turn a committed write into a rejected call; its error surfaces on its own tick. */
  #emitNow<K extends keyof StoreEvents> (name: K, ...args: StoreEvents[K]): void {
    try {
      (this.emit as (n: K, ...a: StoreEvents[K]) => boolean)(name, ...args)
    } catch (err) {
      process.nextTick(() => { throw err })
    }
  }
}

function withPieces (record: TransferRecord, pieces: string[] | undefined): TransferRecord {
  if (record.manifest !== undefined && pieces !== undefined) record.manifest.pieces = pieces
  return record
}

/** A parameter for a jsonb column: node-postgres would send a JS array as a PostgreSQL array. */
function json (value: unknown): string {
  return JSON.stringify(value)
}

function requireAux (key: string, bound = false): void {
  if (!isAuxKey(key, bound)) throw new TypeError(`'${key}' is not in an aux range`)
}

function closedError (): StaccatoError {
  return new StaccatoError('unavailable', 'the transfer store is closed', true)
}

/**
 * The database could not be reached or refused the write: retryable, as a
 * failed disk write is for the LevelDB store. Any other error is passed on.
 */
function unavailable (err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof StaccatoError) return err
  const fromDatabase = err instanceof pg.DatabaseError || (err as NodeJS.ErrnoException).syscall !== undefined || /connection|terminated|timeout/i.test(err.message)
  if (!fromDatabase) return err
  return new StaccatoError('unavailable', `the PostgreSQL store failed (${err instanceof Error ? err.message : String(err)})`, true, { cause: err })
}
