import { EventEmitter } from 'node:events'
import pg from 'pg'
import { InvalidArgumentError, NotFoundError, Serial, StaccatoError, isValidAgentName } from '../mesh/index.ts'
import { createIdGenerator } from './ids.ts'
import { TERMINAL_STATES, canTransition } from './model.ts'
import type { AgentRecord, StoreEvent, TransferInput, TransferRecord, TransferState } from './model.ts'
import { WriteAhead } from './store-ahead.ts'
import type { AuxOp, EventFanout } from './store-aux.ts'
import type { CoordinatorStore, StoreEvents, StoreOptions } from './store-contract.ts'
import { InvalidStateError } from './store-errors.ts'
import { TransferIndex } from './store-index.ts'
import type { ListPage, ListQuery } from './store-index.ts'
import { prepareInput } from './store-input.ts'
import { isAuxKey } from './store-keys.ts'
import { EventAnnouncer } from './store-pg-announce.ts'
import type { LogRead } from './store-pg-announce.ts'
import { PgListener } from './store-pg-listener.ts'
import { NotifyPacer } from './store-pg-notify.ts'
import type { Notice } from './store-pg-notify.ts'
import { CLAIM_OUTBOX_SQL, claimedEntries } from './store-pg-outbox.ts'
import { CHANGES_CHANNEL, EVENTS_CHANNEL, EVENTS_VISIBLE, LOCKS, LOCK_CLASS, WATCHED_AUX, migrate, reserveSeqsSql, returnSeqsSql } from './store-pg-schema.ts'
import { WriteOps, flushOps, flushSql, json } from './store-pg-ops.ts'
import type { ProgressReport } from './store-progress.ts'
import { newRecord, progressData, progressed, transitioned, updated } from './store-records.ts'
import type { CreateOptions, TransitionOptions } from './store-transfers.ts'
import { treeFileRow } from './store-tree-files.ts'
import type { StoredTreeFile, TreeFilePage, TreeFileQuery, TreeFileRow } from './store-tree-files.ts'
import { pgTokenRecords } from './token-records.ts'
import type { TokenRecords } from './token-records.ts'

// The same rate as the LevelDB store (store.ts): a subscriber wants movement, not every report.
const PROGRESS_EVENT_MS = 5000
// Writes use one connection at a time (below); the rest serve reads (feed, SSE, aux). 10 is pg's default.
const POOL_SIZE = 10
/** Writes in one commit at most: bounds how long a group's transaction holds back readers, and what one failed commit loses. */
const GROUP_MAX = 256
/**
 * Seqs reserved at once, with the transaction id (reserveSeqsSql); the
 * unused ones are given back at commit when nobody reserved since. A write
 * makes at most one event, so one block always serves a group: a group
 * never reserves twice (a second block would come after other transactions'
 * blocks, with an older transaction id than theirs).
 */
const SEQ_BLOCK = GROUP_MAX
/** Between attempts to reload memory from the database after a lost write (see #recover): as often. */
const RECOVER_RETRY_MS = 1000
/**
 * How often a replica asks the log's highest seq even though nothing woke it:
 * a notification goes out just after its commit (notifySql), so a replica
 * that dies in between leaves events that no notification names. One small
 * query per replica every few seconds bounds that wait without polling the
 * feed every few ms; the leader lease's own period is of the same order
 * (leader-pg.ts).
 */
const CATCH_UP_MS = 5000

/**
 * Reads of the event log by the announcer (store-pg-announce.ts) start at
 * least this far apart. With several replicas every commit of one wakes the
 * others, and a reader woken per commit paid a round trip (events, then the
 * records they name) for a handful of events: three replicas under a submit
 * load spent 0.68–0.76 instead of 0.79–0.90 CPU-ms per submit with 50 ms
 * against none (scripts/bench-api-probe.ts, two pairs of runs). It is what
 * an event written on another replica may wait at most beyond its commit
 * under load (and this replica's own events when its commit was not clear);
 * a read after a quiet spell starts at once.
 */
const ANNOUNCE_GAP_MS = 50

/**
 * Rounds of notifications (NotifyPacer) start at least this far apart: a
 * commit's NOTIFY was a round trip of its own and woke every replica's
 * listener, while their readers read at most every ANNOUNCE_GAP_MS; under
 * load a commit's events reach the other replicas up to this much later
 * (a round after a quiet spell goes at once). Three replicas under a
 * submit load spent 0.72 / 0.88 against 0.82 / 1.09 coordinator CPU-ms per
 * submit with 50 ms against none, one coordinator 0.42 / 0.43 against
 * 0.48 / 0.46 (scripts/bench-api-probe.ts, two pairs of runs in turn, load
 * 7–10 from other work on the host).
 */
const NOTIFY_GAP_MS = 50

/** The PostgreSQL store's options beyond the contract's. */
export interface PgStoreOptions extends StoreOptions {
  /** ANNOUNCE_GAP_MS. */
  announceGapMs?: number
  /** NOTIFY_GAP_MS; 0: a round per commit. */
  notifyGapMs?: number
  /** CATCH_UP_MS; tests shorten it. */
  catchUpMs?: number
}
/** One write of a group: its changes, and how its caller hears the commit. */
interface GroupWrite {
  ops: WriteOps
  /** Records its memory changes touched (`transfer.<id>`, `agent.<name>`): reloaded if the database refuses it. */
  touched: string[]
  keys: string[]
  committed: Deferred
}

/** Writes that commit together: one transaction on one connection, opened at the first event or at commit. */
interface Group {
  /** Numbers groups in commit order: the ticket of the memory changes it commits (WriteAhead). */
  no: number
  client: pg.PoolClient | undefined
  /** Its transaction opening and its seqs being reserved (#open), perhaps ahead of its first write. */
  opening: Promise<void> | undefined
  writes: GroupWrite[]
  /** Some write needs a synchronous commit. */
  sync: boolean
  /** The next reserved seq, and the end of the reserved block (exclusive). */
  nextSeq: number
  seqEnd: number
  /** The transaction id taken with the block ('' until then). */
  xid: string
}

/** A write's commit: resolves with whether it was clear (nothing older was running: its events are announced at once). */
interface Deferred { promise: Promise<boolean>, resolve: (clear: boolean) => void, reject: (err: unknown) => void }

/** One write: what it changes, its events, and what to do once it has committed. */
interface Tx {
  ops: WriteOps
  event: (topic: string, tenant: string, now: number, data: Record<string, unknown>, record: TransferRecord | undefined) => Promise<StoreEvent>
  /** Runs once the write has run (the next write sees what it changes). */
  ran: (fn: () => void) => void
  /** The write changes a transfer or an agent (null: deletes it): the next writes see it at once, readers once it has committed. */
  put: (record: TransferRecord) => void
  drop: (id: string) => void
  putAgent: (record: AgentRecord) => void
  dropAgent: (name: string) => void
  /** Names a record whose memory this write changes (`transfer.<id>` or `agent.<name>`). */
  touch: (topic: string) => void
  /** Notifications, sent once the write has committed. */
  emit: <K extends keyof StoreEvents>(name: K, ...args: StoreEvents[K]) => void
}

/**
 * The store on PostgreSQL (`--store postgres://…`). Like the LevelDB store it
 * keeps every transfer and agent in memory (the scheduler reads the whole
 * queue on every pass) and the database is the source of truth: open()
 * loads memory from it. Readers see a change once its group has committed;
 * the writes after it see it at once (store-ahead.ts).
 *
 * Writes commit in groups (one transaction, a few multi-row statements:
 * see #write); a state change, its event and the event's webhook outbox rows
 * always commit together.
 *
 * Event seqs: a group reserves a block of seqs from a sequence together with
 * its transaction id, under an advisory lock (LOCKS.events) held for that one
 * statement (reserveSeqsSql), so a lower seq always belongs to an older
 * transaction. Groups of several replicas then flush and commit at once,
 * in any order; a reader (readEvents, and so the feed, SSE and this
 * announcer) sees an event only once its transaction is older than every
 * transaction still running (EVENTS_VISIBLE): by then every lower seq has
 * committed or never will, so a reader that has seen seq n never later
 * finds a new event below n, whichever process wrote it. (Until 2026-11 the
 * lock was held to COMMIT: replicas' commits, each with its fsync, ran one
 * at a time.) Seqs may skip numbers (those of a write that failed, of a
 * block another group reserved past, or of a process that died holding a
 * block). A transaction holding events runs with synchronous commit; only a
 * group of progress reports without events commits asynchronously, so a
 * crash can never lose an event whose seq a reader has seen.
 *
 * Every commit with events notifies EVENTS_CHANNEL, just after it (see
 * notifySql for why not in it); a store that hears of
 * events it did not write (another process on the same database) reads them,
 * reloads the records they are about and announces them ('event'), so feed
 * and SSE readers are woken by LISTEN/NOTIFY, not by polling. Its own events
 * are announced in the same seq order (EventAnnouncer). A write's caller
 * hears back once its events are announced if its commit found no older
 * transaction running (the rule with one coordinator: read-your-writes on the
 * feed), else once committed: an older transaction anywhere on the cluster
 * (another replica's commit, an operator's open psql session) holds back the
 * feed, never the acknowledgement of a durable write.
 */
export class PgTransferStore extends EventEmitter<StoreEvents> implements CoordinatorStore {
  readonly #pool: pg.Pool
  readonly #listener: PgListener
  /** What has committed: what every reader sees. */
  #index = new TransferIndex()
  readonly #agents = new Map<string, AgentRecord>()
  /** What writes of the group not yet committed changed: what the next writes see (store-ahead.ts). */
  readonly #aheadTransfers = new WriteAhead<TransferRecord>()
  readonly #aheadAgents = new WriteAhead<AgentRecord>()
  #groups = 0
  readonly #transferIds = createIdGenerator('tr_')
  readonly #eventIds = createIdGenerator('ev_')
  #trimmed = 0
  #writes = new Serial()
  #closed = false
  #fanout: EventFanout | undefined
  readonly #progressEventMs: number
  readonly #progressEventAt = new Map<string, number>()
  /** Announces events in seq order; its cursor is the store's seq. */
  readonly #announcer: EventAnnouncer
  /** Sends the notifications of commits (#commitTail), paced. */
  readonly #notices: NotifyPacer
  #fencePid: number | undefined
  /** Idempotency keys (`tenant \0 key`) this process wrote: found without a round trip. */
  readonly #keys = new Map<string, string>()
  #group: Group | undefined
  /** The group whose commit is on its way. */
  #committing: Group | undefined
  /** Writes handed in whose turn has not come: while there are some, the group stays open for them. */
  #waiting = 0
  #failure: StaccatoError | undefined
  /** Listeners of the token records (tokenRecords().watch). */
  readonly #tokenWatchers: Array<(key: string) => void> = []
  /** Transfers whose memory changed since the announcer's read of the log began (#readLog): newer than what it read. */
  #changedSinceRead: Set<string> | undefined
  #recoverTimer: NodeJS.Timeout | undefined
  #catchUpTimer: NodeJS.Timeout | undefined

  private constructor (url: string, pool: pg.Pool, opts: PgStoreOptions) {
    super()
    this.#listener = new PgListener(url, {
      events: seq => { if (!this.#closed) this.#announcer.heard(seq) },
      changed: payload => { if (!this.#closed) this.#changed(payload) },
      // Events committed meanwhile are read from the highest seq in the log.
      reconnected: async () => { await this.#hearLatest() }
    })
    this.#pool = pool
    this.#progressEventMs = opts.progressEventMs ?? PROGRESS_EVENT_MS
    this.#announcer = new EventAnnouncer({
      read: async (after, limit, own) => await this.#readLog(after, limit, own),
      trimmed: async () => Number((await this.#pool.query<{ value: number }>('SELECT value FROM store_meta WHERE key = \'trimmed\'')).rows[0]?.value ?? 0),
      emit: event => { this.#emitNow('event', event) }
    }, { readGapMs: opts.announceGapMs ?? ANNOUNCE_GAP_MS })
    this.#notices = new NotifyPacer({
      send: async notice => {
        const sql = notifySql(notice)
        if (sql !== '') await this.#pool.query(sql)
      }
    }, opts.notifyGapMs ?? NOTIFY_GAP_MS)
  }

  static async open (url: string, opts: PgStoreOptions = {}): Promise<PgTransferStore> {
    const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE })
    // An idle client's error (the server restarted) is reported to the query that next uses the pool; unhandled it would kill the process.
    pool.on('error', () => {})
    // A checked-out client (a group's transaction) whose server dies emits 'error' too: its query fails with it, and that is the report.
    pool.on('connect', client => { client.on('error', () => {}) })
    const store = new PgTransferStore(url, pool, opts)
    try {
      const client = await pool.connect()
      try {
        await migrate(client)
      } finally {
        client.release()
      }
      await store.#load()
      await store.#listener.start()
      // Events committed between the load and LISTEN sent their notifications to nobody.
      await store.#hearLatest()
      store.#catchUpTimer = setInterval(() => {
        if (!store.#closed) store.#hearLatest().catch(() => {})
      }, opts.catchUpMs ?? CATCH_UP_MS)
      store.#catchUpTimer.unref()
    } catch (err) {
      // Opening failed: the caller gets that error; a listener that will not end cleanly changes nothing for it.
      await store.#listener.close()
      await pool.end()
      throw unavailable(err)
    }
    return store
  }

  /**
   * After a lost write (#fail), makes memory what the database holds again
   * and lifts the failure: tried in the write chain (nothing interleaves),
   * at the next write and every RECOVER_RETRY_MS, until the database
   * answers. A write whose commit was in doubt (the connection died around
   * COMMIT) was answered with an error and is now whatever the database
   * kept; an acknowledged write is there (synchronous commit). Resolves at
   * once when nothing failed.
   */
  recover (): Promise<void> {
    if (this.#closed) return Promise.reject(closedError())
    return this.#writes.run(async () => { await this.#tryRecover() }).then(() => {
      if (this.#failure !== undefined) throw this.#failure
    })
  }

  async #tryRecover (): Promise<void> {
    if (this.#failure === undefined || this.#closed) return
    try {
      await this.#load()
      this.#keys.clear()
      this.#progressEventAt.clear()
      this.#failure = undefined
      this.#announcer.wake()
      clearTimeout(this.#recoverTimer)
      this.#recoverTimer = undefined
    } catch {
      // Still unreachable: the failure stands, the timer tries again.
    }
  }

  #scheduleRecovery (): void {
    if (this.#closed || this.#recoverTimer !== undefined) return
    this.#recoverTimer = setTimeout(() => {
      this.#recoverTimer = undefined
      if (this.#failure === undefined || this.#closed) return
      this.#writes.run(async () => { await this.#tryRecover() }).catch(() => {}).finally(() => {
        if (this.#failure !== undefined) this.#scheduleRecovery()
      })
    }, RECOVER_RETRY_MS)
  }

  /** Reads everything first and changes memory only once all of it is read: a failed load leaves memory as it was. */
  async #load (): Promise<void> {
    // First: every event up to `visible` was committed before the records below are read, so they include its changes; later events are read and announced (EventAnnouncer).
    const seqs = (await this.#pool.query<{ visible: string | null, last: string | null }>(`SELECT (SELECT max(seq) FROM events WHERE ${EVENTS_VISIBLE}) AS visible, (SELECT max(seq) FROM events) AS last`)).rows[0]
    const pieces = new Map<string, string[]>()
    for (const row of (await this.#pool.query<{ id: string, pieces: string[] }>('SELECT id, pieces FROM transfer_pieces')).rows) pieces.set(row.id, row.pieces)
    const records = (await this.#pool.query<{ record: TransferRecord }>('SELECT record FROM transfers')).rows.map(r => withPieces(r.record, pieces.get(r.record.id)))
    const agents = (await this.#pool.query<{ record: AgentRecord }>('SELECT record FROM agents')).rows.map(r => r.record)
    const last = (await this.#pool.query<{ event: StoreEvent }>('SELECT event FROM events ORDER BY seq DESC LIMIT 1')).rows[0]?.event
    const trimmed = (await this.#pool.query<{ value: number }>('SELECT value FROM store_meta WHERE key = \'trimmed\'')).rows[0]?.value
    this.#index = new TransferIndex()
    this.#index.load(records)
    this.#aheadTransfers.clear()
    this.#aheadAgents.clear()
    const lastId = this.#index.lastId()
    if (lastId !== undefined) this.#transferIds.seed(lastId)
    this.#agents.clear()
    for (const rec of agents) this.#agents.set(rec.name, rec)
    this.#trimmed = trimmed ?? 0
    this.#announcer.reset(Math.max(Number(seqs.visible ?? 0), this.#trimmed), Number(seqs.last ?? 0))
    if (last !== undefined) this.#eventIds.seed(last.id)
  }

  async #hearLatest (): Promise<void> {
    const last = (await this.#pool.query<{ seq: string | null }>('SELECT max(seq) AS seq FROM events')).rows[0]?.seq
    if (last !== null && last !== undefined) this.#announcer.heard(Number(last))
  }

  /** A watched aux record or a token changed somewhere (CHANGES_CHANNEL): its readers reload it. */
  #changed (payload: string): void {
    const key = payload.slice(1)
    if (payload.startsWith('a')) this.#emitNow('auxChanged', key)
    else if (payload.startsWith('t')) for (const watcher of this.#tokenWatchers) watcher(key)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#recoverTimer)
    clearInterval(this.#catchUpTimer)
    await this.#writes.idle()
    this.#announcer.close()
    await this.#notices.close()
    await this.#listener.close()
    await this.#pool.end()
  }

  /** The token store's records, in this database (through this store's pool: close the token store first). */
  tokenRecords (): TokenRecords {
    return pgTokenRecords(this.#pool, listener => { this.#tokenWatchers.push(listener) })
  }

  /** The last event announced here: every event up to it is in the log for every reader (EVENTS_VISIBLE). */
  get seq (): number { return this.#announcer.through }
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
    const keyName = idempotencyKey !== undefined ? `${tenant}\0${idempotencyKey}` : undefined
    // Read before the write's turn, so that the lookup's round trip does not hold up the writes queued behind it.
    const stored = idempotencyKey !== undefined && !this.#keys.has(keyName as string) ? this.#lookupKey(tenant, idempotencyKey) : undefined
    stored?.catch(() => {})
    return this.#write(true, async tx => {
      if (keyName !== undefined) {
        const firstId = this.#keys.get(keyName) ?? await stored
        // A key whose transfer was deleted since is free again.
        const first = firstId !== undefined ? this.#ahead(firstId) : undefined
        if (first !== undefined) return { record: first, created: false }
      }
      const now = opts.now ?? Date.now()
      const record = newRecord(prepared, this.#transferIds.next(now), tenant, now)
      tx.ops.insertTransfer(record)
      if (idempotencyKey !== undefined) tx.ops.keys.set(keyName as string, { tenant, key: idempotencyKey, id: record.id })
      await tx.event(`transfer.${record.id}.state`, tenant, now, { from: null, to: 'queued', attempt: 0 }, record)
      tx.touch(`transfer.${record.id}`)
      tx.put(record)
      tx.ran(() => { if (keyName !== undefined) this.#keys.set(keyName, record.id) })
      tx.emit('created', record)
      return { record, created: true }
    })
  }

  async #lookupKey (tenant: string, key: string): Promise<string | undefined> {
    const row = (await this.#read('SELECT transfer_id FROM idempotency_keys WHERE tenant = $1 AND key = $2', [tenant, key]))[0] as { transfer_id: string } | undefined
    return row?.transfer_id
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
      tx.ops.updateTransfer(record)
      await tx.event(`transfer.${id}.state`, record.tenant, now, data, record)
      tx.touch(`transfer.${id}`)
      tx.put(record)
      tx.ran(() => { if (TERMINAL_STATES.has(to)) this.#progressEventAt.delete(id) })
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
      tx.ops.updateTransfer(record)
      if (record.manifest !== prev.manifest && record.manifest !== undefined) tx.ops.pieces.set(id, record.manifest.pieces)
      await tx.event(topic, record.tenant, now, data, record)
      tx.touch(`transfer.${id}`)
      tx.put(record)
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
      tx.ops.updateTransfer(record)
      if (withEvent) {
        await tx.event(`transfer.${id}.progress`, record.tenant, now, progressData(record), record)
        tx.ran(() => this.#progressEventAt.set(id, now))
      }
      tx.touch(`transfer.${id}`)
      tx.put(record)
      tx.emit('progress', record)
    })
  }

  remove (id: string, opts: { now?: number } = {}): Promise<void> {
    return this.#write(true, async tx => {
      const prev = this.#require(id)
      if (!TERMINAL_STATES.has(prev.state)) {
        throw new InvalidStateError(`transfer ${id} is ${prev.state}: only a finished transfer can be deleted (cancel it first)`)
      }
      tx.ops.deleteTransfer(id)
      await tx.event(`transfer.${id}.deleted`, prev.tenant, opts.now ?? Date.now(), { state: prev.state }, prev)
      tx.touch(`transfer.${id}`)
      tx.drop(id)
      tx.ran(() => { this.#progressEventAt.delete(id) })
      tx.emit('removed', prev)
    })
  }

  putTreeFiles (id: string, rows: readonly TreeFileRow[]): Promise<void> {
    return this.#write(false, async tx => {
      this.#require(id)
      tx.ops.putTreeFiles(id, rows)
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
      const wasOnline = this.#aheadAgents.read(record.name, this.#agents.get(record.name))?.online ?? false
      tx.ops.agents.set(record.name, record)
      if (wasOnline !== record.online) await tx.event(`agent.${record.name}.online`, '*', opts.now ?? Date.now(), { online: record.online }, undefined)
      tx.touch(`agent.${record.name}`)
      tx.putAgent(record)
      tx.emit('agent', record)
    })
  }

  removeAgent (name: string, opts: { now?: number } = {}): Promise<boolean> {
    return this.#write(true, async tx => {
      if (this.#aheadAgents.read(name, this.#agents.get(name)) === undefined) return false
      tx.ops.agents.set(name, null)
      await tx.event(`agent.${name}.removed`, '*', opts.now ?? Date.now(), { name }, undefined)
      tx.touch(`agent.${name}`)
      tx.dropAgent(name)
      return true
    })
  }

  getAgent (name: string): AgentRecord | undefined { return this.#agents.get(name) }

  listAgents (): AgentRecord[] {
    return [...this.#agents.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  }

  async readEvents (after: number, limit: number): Promise<StoreEvent[]> {
    if (this.#closed) throw closedError()
    const rows = await this.#read(`SELECT event FROM events WHERE seq > $1 AND ${EVENTS_VISIBLE} ORDER BY seq LIMIT $2`, [Math.max(0, after), limit])
    return rows.map(r => (r as { event: StoreEvent }).event)
  }

  appendEvent (topic: string, tenant: string, data: Record<string, unknown>, opts: { record?: TransferRecord, sync?: boolean, now?: number } = {}): Promise<StoreEvent> {
    return this.#write(true, async tx => await tx.event(topic, tenant, opts.now ?? Date.now(), data, opts.record))
  }

  /** Its own transaction, in the write chain: which seqs it deletes is the database's answer, not memory's. */
  trimEvents (throughSeq: number, limit: number): Promise<number> {
    if (this.#closed) return Promise.reject(closedError())
    return this.#writes.run(async () => {
      await this.#tryRecover()
      if (this.#failure !== undefined) throw this.#failure
      // A group still open holds seqs above what is committed: trimming through them would hide its events.
      const group = this.#group
      this.#group = undefined
      if (group !== undefined) await this.#commitGroup(group)
      const through = Math.min(throughSeq, this.#announcer.through)
      if (through <= this.#trimmed) return this.#trimmed
      const client = await this.#pool.connect().catch(err => { throw unavailable(err) })
      try {
        await client.query('BEGIN')
        const deleted = (await client.query<{ seq: string }>('DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3) RETURNING seq', [this.#trimmed, through, limit])).rows.map(r => Number(r.seq))
        const last = deleted.length === limit ? Math.max(...deleted) : through
        await client.query('INSERT INTO store_meta (key, value) VALUES (\'trimmed\', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', [json(last)])
        await client.query('COMMIT')
        client.release()
        this.#trimmed = last
        return last
      } catch (err) {
        client.release(true)
        throw unavailable(err)
      }
    })
  }

  writeAux (ops: AuxOp[], opts: { sync: boolean, onWritten?: () => void }): Promise<void> {
    for (const op of ops) requireAux(op.key)
    return this.#write(opts.sync, async tx => {
      for (const op of ops) tx.ops.aux.set(op.key, op.type === 'put' ? { value: op.value } : null)
      tx.ran(() => opts.onWritten?.())
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

  /** FOR UPDATE SKIP LOCKED: see CLAIM_OUTBOX_SQL. */
  async claimOutbox (q: { owner: string, now: number, until: number, limit: number }): Promise<Array<[string, unknown]>> {
    if (this.#closed) throw closedError()
    return claimedEntries(await this.#read(CLAIM_OUTBOX_SQL, [q.owner, q.now, q.until, q.limit]))
  }

  /** A transfer as the writes so far left it, committed or not: what the next write checks. */
  #ahead (id: string): TransferRecord | undefined {
    return this.#aheadTransfers.read(id, this.#index.get(id))
  }

  #require (id: string): TransferRecord {
    const rec = this.#ahead(id)
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
   * Runs one write after every earlier one. The write itself only checks
   * memory and records its changes (WriteOps); the next write sees them at
   * once (it checks the state this one left), readers once the group has
   * committed (store-ahead.ts). The group commits
   * when no write is waiting behind it (or it is GROUP_MAX long): one
   * transaction sends every write's changes in a few multi-row statements,
   * so one commit makes many writes durable in a few round trips, as the
   * LevelDB store's group commit does. A caller hears back, and
   * notifications go out, once its group has committed.
   */
  #write<T> (sync: boolean, fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError())
    this.#waiting++
    this.#openAhead()
    const ran = this.#writes.run(async () => {
      this.#waiting--
      const outcome = await this.#runInGroup(sync, fn)
      const group = this.#group
      if (group !== undefined && (this.#waiting === 0 || group.writes.length >= GROUP_MAX)) {
        this.#group = undefined
        this.#committing = group
        this.#openAhead()
        try {
          await this.#commitGroup(group)
        } finally {
          this.#committing = undefined
        }
      }
      return outcome
    })
    return ran.then(async outcome => {
      if (!outcome.ok) throw outcome.error
      const clear = await outcome.committed
      for (const emit of outcome.emits) emit()
      // Not clear: an older transaction (another replica's commit, an operator's open psql session) holds back the
      // feed, never the acknowledgement of a durable write.
      const last = outcome.events.at(-1)
      if (clear && last !== undefined) await this.#announcer.announced(last.seq)
      return outcome.value
    })
  }

  async #runInGroup<T> (sync: boolean, fn: (tx: Tx) => Promise<T>): Promise<{ ok: true, value: T, committed: Promise<boolean>, emits: Array<() => void>, events: StoreEvent[] } | { ok: false, error: unknown }> {
    if (this.#failure !== undefined) await this.#tryRecover()
    if (this.#failure !== undefined) return { ok: false, error: this.#failure }
    const group = this.#group ??= this.#newGroup()
    const ops = new WriteOps()
    const after: Array<() => void> = []
    const emits: Array<() => void> = []
    const touched: string[] = []
    const tx: Tx = {
      ops,
      event: async (topic, tenant, now, data, record) => {
        const seq = await this.#reserveSeq(group)
        const event: StoreEvent = { seq, id: this.#eventIds.next(now), time: new Date(now).toISOString(), topic, tenant, data }
        for (const { key, value } of this.#fanout?.(event, record) ?? []) {
          requireAux(key)
          ops.aux.set(key, { value })
        }
        ops.events.push(event)
        return event
      },
      ran: fn => { after.push(fn) },
      put: rec => { after.push(() => { this.#aheadTransfers.stage(rec.id, rec, group.no, () => { this.#changedSinceRead?.add(rec.id); this.#index.put(rec) }, ops) }) },
      drop: id => { after.push(() => { this.#aheadTransfers.stage(id, null, group.no, () => { this.#changedSinceRead?.add(id); this.#index.delete(id) }, ops) }) },
      putAgent: rec => { after.push(() => { this.#aheadAgents.stage(rec.name, rec, group.no, () => { this.#agents.set(rec.name, rec) }, ops) }) },
      dropAgent: name => { after.push(() => { this.#aheadAgents.stage(name, null, group.no, () => { this.#agents.delete(name) }, ops) }) },
      touch: topic => { touched.push(topic) },
      emit: (name, ...args) => { emits.push(() => { this.#emitNow(name, ...args) }) }
    }
    let value: T
    try {
      value = await fn(tx)
    } catch (error) {
      // Nothing of the write was sent; seqs it took are skipped (the log may skip numbers).
      return { ok: false, error: unavailable(error) }
    }
    for (const apply of after) apply()
    group.sync ||= sync || ops.events.length > 0
    const committed = deferred()
    group.writes.push({ ops, touched, keys: [...ops.keys.keys()], committed })
    return { ok: true, value, committed: committed.promise, emits, events: ops.events }
  }

  /**
   * The next event seq. The group's first event opens its transaction and
   * reserves a block of seqs with its transaction id (reserveSeqsSql); the
   * events lock is held for that statement only, so replicas' groups flush
   * and commit side by side, and readers keep seqs in order by EVENTS_VISIBLE.
   */
  async #reserveSeq (group: Group): Promise<number> {
    if (group.nextSeq < group.seqEnd) return group.nextSeq++
    // Cannot happen (SEQ_BLOCK): a second block would break the order readers rely on.
    if (group.client !== undefined) throw new StaccatoError('internal', `a group of writes made more than ${SEQ_BLOCK} events`, false)
    await this.#open(group)
    return group.nextSeq++
  }

  #newGroup (): Group {
    return { no: ++this.#groups, client: undefined, opening: undefined, writes: [], sync: false, nextSeq: 0, seqEnd: 0, xid: '' }
  }

  /**
   * While a group that made events commits, the writes handed in meanwhile
   * get the next group's transaction opened and its seqs reserved already:
   * their first event then does not wait for that round trip (with several
   * replicas, most of a group's time was its round trips). Its block and
   * transaction id come after the committing group's, as the order readers
   * rely on wants.
   */
  #openAhead (): void {
    const committing = this.#committing
    if (this.#waiting === 0 || this.#group !== undefined || committing?.client === undefined) return
    this.#open(this.#group = this.#newGroup(), committing).catch(() => {})
  }

  /**
   * Opens the group's transaction and reserves its block of seqs with its
   * transaction id (reserveSeqsSql), in one round trip, once. On failure
   * nothing of the group was sent: the write waiting on it fails alone, and
   * the next one tries again. Opened ahead (#openAhead), it first gives
   * back the rest of the committing group's block (that group's writes have
   * all run), which that group's commit would no longer find its own to give
   * back once this block is reserved.
   */
  #open (group: Group, before?: Group): Promise<void> {
    if (group.opening !== undefined) return group.opening
    const giveBack = before !== undefined && before.nextSeq < before.seqEnd ? `${returnSeqsSql(before.nextSeq, before.seqEnd - 1)}; ` : ''
    if (before !== undefined) before.seqEnd = before.nextSeq
    const opening = (async () => {
      const client = await this.#pool.connect()
      let results: pg.QueryResult[]
      try {
        // The savepoint lets a refused write be found and left out (#commitGroup).
        results = await client.query(`BEGIN; ${giveBack}${reserveSeqsSql(SEQ_BLOCK)}; SAVEPOINT flush`) as unknown as pg.QueryResult[]
      } catch (err) {
        // The connection may hold the events lock: it goes.
        client.release(true)
        throw err
      }
      group.client = client
      const row = (results.find(r => r.command === 'SELECT' && r.fields[1]?.name === 'last') as pg.QueryResult<{ xid: string, last: string }>).rows[0]
      const last = Number(row.last)
      group.xid = row.xid
      group.seqEnd = last + 1
      group.nextSeq = last - SEQ_BLOCK + 1
    })()
    group.opening = opening
    opening.catch(() => { if (group.opening === opening) group.opening = undefined })
    return opening
  }

  async #commitGroup (group: Group): Promise<void> {
    // Opened ahead for writes that then made no event (or failed): its transaction serves them all the same, or goes back.
    await group.opening?.catch(() => {})
    if (group.writes.length === 0) {
      // Every write failed: give the transaction (and its lock) back.
      if (group.client !== undefined) await group.client.query('ROLLBACK').then(() => group.client?.release(), () => group.client?.release(true))
      return
    }
    const refused = new Map<GroupWrite, unknown>()
    // A fenced-off group commits nothing: every write is refused, none resolves with this.
    let clear = true
    try {
      const client = group.client ?? await this.#pool.connect()
      if (group.client === undefined) {
        group.client = client
        await client.query('BEGIN; SAVEPOINT flush')
      }
      const all = new WriteOps()
      for (const w of group.writes) all.merge(w.ops)
      const fence = this.#fencePid !== undefined ? [fenceSql(this.#fencePid)] : []
      try {
        try {
          // The changes, the fence and the commit: one round trip.
          clear = await this.#commitTail(client, group, refused, [...flushSql(all), ...fence])
        } catch (err) {
          if (!refusal(err)) throw err
          // Some write's data was refused: send them one by one, each behind a savepoint, and leave out the ones refused.
          await client.query('ROLLBACK TO SAVEPOINT flush')
          for (const w of group.writes) {
            await client.query('SAVEPOINT w')
            try {
              await flushOps(client, w.ops)
              await client.query('RELEASE SAVEPOINT w')
            } catch (e) {
              if (!refusal(e)) throw e
              await client.query('ROLLBACK TO SAVEPOINT w')
              refused.set(w, e)
            }
          }
          clear = await this.#commitTail(client, group, refused, fence)
        }
      } catch (err) {
        if (!fenceLost(err)) throw err
        await client.query('ROLLBACK')
        client.release()
        const lost = new StaccatoError('unavailable', 'this coordinator lost the leader lease while writing; the write was not made', true)
        for (const w of group.writes) refused.set(w, lost)
        // Seqs it took are skipped.
      }
    } catch (err) {
      // Readers keep what committed before; the writes' changes wait for #load (after recovery) to say whether they committed.
      group.client?.release(true)
      const failure = this.#fail(err)
      for (const w of group.writes) w.committed.reject(failure)
      return
    }
    const left = new Set([...refused.keys()].map(w => w.ops))
    this.#aheadTransfers.commit(group.no, left)
    this.#aheadAgents.commit(group.no, left)
    for (const w of group.writes) {
      const error = refused.get(w)
      if (error === undefined) {
        w.committed.resolve(clear)
        continue
      }
      // Memory took the write at once: it follows the database again.
      for (const key of w.keys) this.#keys.delete(key)
      await this.#reloadFor(w.touched.map(topic => ({ topic }) as StoreEvent)).catch(err => { this.#fail(err) })
      w.committed.reject(error instanceof StaccatoError ? error : new InvalidArgumentError(`the database refused the write: ${error instanceof Error ? error.message : String(error)}`))
    }
  }

  /**
   * Commits the group after the statements `head` (the group's changes that
   * were not sent yet, the fence), in one round trip; answers whether it was
   * clear (EventAnnouncer.committed).
   */
  async #commitTail (client: pg.PoolClient, group: Group, refused: Map<GroupWrite, unknown>, head: string[]): Promise<boolean> {
    const kept = group.writes.filter(w => !refused.has(w))
    const events = kept.flatMap(w => w.ops.events)
    const tail = [...head]
    // The rest of the block goes back if nobody reserved since, so that seqs of one writer skip numbers only when a write fails or a process dies.
    if (group.seqEnd > 0 && group.nextSeq < group.seqEnd) {
      tail.push(returnSeqsSql(group.nextSeq, group.seqEnd - 1))
      // Given back once: the next group opened ahead meanwhile (#open) must not give it back again. A block none of
      // whose seqs was used is reserved again whole by the first give-back's next reservation, so a second give-back
      // arriving after that reservation finds the sequence where it left it and hands those seqs out twice.
      group.seqEnd = group.nextSeq
    }
    // Only a group without events may commit before its WAL is on disk (see the class comment).
    if (!group.sync) tail.push('SET LOCAL synchronous_commit = off')
    tail.push('COMMIT')
    const first = events[0]?.seq ?? 0
    const from = this.#announcer.through
    // After the commit, in the same round trip: may this process announce its events at once (EventAnnouncer.committed)?
    // Yes if every older transaction has ended and none left an event between what is announced here and this group.
    if (events.length > 0) tail.push(`SELECT pg_snapshot_xmin(pg_current_snapshot()) > '${group.xid}'::xid8 AND NOT EXISTS (SELECT 1 FROM events WHERE seq > ${from} AND seq < ${first}) AS clear`)
    // Known as this process's before they commit: a pass that reads them then does not take them for another's.
    this.#announcer.committing(events)
    let results: pg.QueryResult | pg.QueryResult[]
    try {
      results = await client.query(tail.join('; ')) as pg.QueryResult | pg.QueryResult[]
    } catch (err) {
      this.#announcer.failed(events)
      throw err
    }
    client.release()
    this.#notices.add(events.at(-1)?.seq ?? 0, watchedKeys(kept))
    if (events.length === 0) return true
    const clear = (Array.isArray(results) ? results[results.length - 1] : results).rows[0]?.clear === true
    this.#announcer.committed(events, clear)
    return clear
  }

  /**
   * Fences this process's writes with the leader lease (leader-pg.ts): while
   * set, a group commits only if the lease's lock is still granted to that
   * session, checked in the group's own transaction just before COMMIT.
   */
  setFence (pid: number | undefined): void {
    this.#fencePid = pid
  }

  /**
   * Memory is now ahead of the database (a group's writes are applied before
   * it commits): every later write fails until memory is reloaded from the
   * database (#tryRecover, once it answers again).
   */
  #fail (err: unknown): StaccatoError {
    this.#failure ??= new StaccatoError('unavailable', `the PostgreSQL store lost a write (${err instanceof Error ? err.message : String(err)}); it reloads from the database once that answers again`, true, { cause: err })
    this.#scheduleRecovery()
    return this.#failure
  }

  /**
   * The announcer's read of the log: the visible events after `after` and,
   * in the same query, the records of the transfers they name (a follower's
   * reload was a second round trip per read). Following the events another
   * process wrote puts those records in the committed view, except those
   * whose memory changed after the read began (#changedSinceRead: a local
   * commit or a reload is at least as new as what the query read); agents,
   * rarely in the log, are reloaded by a query of their own (#reloadFor).
   * The records of this process's own events (`own`) are not read: with
   * replicas, its commits are often read back rather than announced at once.
   */
  async #readLog (after: number, limit: number, own: number[]): Promise<LogRead> {
    if (this.#closed) throw closedError()
    const index = this.#index
    const changed = this.#changedSinceRead = new Set()
    let rows: Array<{ event: StoreEvent | null, record: TransferRecord | null, pieces: string[] | null }>
    try {
      // A CTE named twice is computed once: the records are those of the events read, in the same snapshot.
      rows = await this.#read(`WITH e AS (SELECT seq, event FROM events WHERE seq > $1 AND ${EVENTS_VISIBLE} ORDER BY seq LIMIT $2)
        SELECT e.seq, e.event, NULL::jsonb AS record, NULL::jsonb AS pieces FROM e
        UNION ALL
        SELECT NULL, NULL, t.record, p.pieces FROM transfers t LEFT JOIN transfer_pieces p ON p.id = t.id
          WHERE t.id IN (SELECT split_part(e.event->>'topic', '.', 2) FROM e WHERE e.event->>'topic' LIKE 'transfer.%' AND e.seq <> ALL($3::bigint[]))`, [Math.max(0, after), limit, own]) as typeof rows
    } catch (err) {
      if (this.#changedSinceRead === changed) this.#changedSinceRead = undefined
      throw err
    }
    const events: StoreEvent[] = []
    const records = new Map<string, TransferRecord>()
    for (const row of rows) {
      if (row.event !== null) events.push(row.event)
      else if (row.record !== null) records.set(row.record.id, withPieces(row.record, row.pieces ?? undefined))
    }
    // UNION ALL promises no order.
    events.sort((a, b) => a.seq - b.seq)
    const ownSeqs = new Set(own)
    return {
      events,
      follow: async foreign => {
        try {
          // Read with the events: what a transfer's absence then means is that it was deleted.
          const read = foreign.filter(e => e.topic.startsWith('transfer.') && !ownSeqs.has(e.seq))
          const gone = this.#follow(read, records, index, changed)
          // Agents; and an event taken for this process's at the read whose commit then failed, which may have
          // committed after all (read as another's): their records were not read with them.
          const rest = foreign.filter(e => !e.topic.startsWith('transfer.') || ownSeqs.has(e.seq))
          if (rest.length > 0) for (const [id, prev] of await this.#reloadFor(rest)) gone.set(id, prev)
          return event => this.#announcements([event], gone)
        } finally {
          if (this.#changedSinceRead === changed) this.#changedSinceRead = undefined
        }
      }
    }
  }

  /** Puts the records #readLog read for these events in the committed view; returns the transfers found deleted, as memory last had them. */
  #follow (events: StoreEvent[], records: Map<string, TransferRecord>, index: TransferIndex, changed: Set<string>): Map<string, TransferRecord> {
    const gone = new Map<string, TransferRecord>()
    // Memory was reloaded from the database meanwhile (#load): it is newer than these rows.
    if (this.#index !== index) return gone
    for (const e of events) {
      const [kind, id] = e.topic.split('.')
      if (kind !== 'transfer' || changed.has(id)) continue
      // Marked: a second event of the batch about it changes nothing more.
      changed.add(id)
      const record = records.get(id)
      if (record !== undefined) {
        index.put(record)
        continue
      }
      const prev = index.get(id)
      if (prev === undefined) continue
      gone.set(id, prev)
      index.delete(id)
    }
    return gone
  }

  /**
   * Reloads the records of these events into the committed view (one query
   * per kind, for the whole batch); returns the transfers found deleted, as
   * memory last had them. It runs beside the writes, not in their chain: a
   * record that changed in memory while the query ran (a local commit, or
   * another reload) is at least as new as what the query read, and is kept.
   * Writes check their own view first (store-ahead.ts), so a reload never
   * changes what a write in progress decides on.
   */
  async #reloadFor (events: StoreEvent[]): Promise<Map<string, TransferRecord>> {
    const ids = new Set<string>()
    const names = new Set<string>()
    for (const e of events) {
      const [kind, name] = e.topic.split('.')
      if (kind === 'transfer') ids.add(name)
      else if (kind === 'agent') names.add(name)
    }
    const gone = new Map<string, TransferRecord>()
    const index = this.#index
    const before = new Map([...ids].map(id => [id, index.get(id)]))
    const agentsBefore = new Map([...names].map(name => [name, this.#agents.get(name)]))
    const [transfers, agents] = await Promise.all([
      ids.size > 0 ? this.#pool.query<{ record: TransferRecord, pieces: string[] | null }>('SELECT t.record, p.pieces FROM transfers t LEFT JOIN transfer_pieces p ON p.id = t.id WHERE t.id = ANY($1::text[])', [[...ids]]) : undefined,
      names.size > 0 ? this.#pool.query<{ record: AgentRecord }>('SELECT record FROM agents WHERE name = ANY($1::text[])', [[...names]]) : undefined
    ])
    // Memory was reloaded from the database meanwhile (#load): it is newer than these rows.
    if (this.#index !== index) return gone
    const found = new Set<string>()
    for (const row of transfers?.rows ?? []) {
      found.add(row.record.id)
      if (index.get(row.record.id) !== before.get(row.record.id)) continue
      this.#changedSinceRead?.add(row.record.id)
      index.put(withPieces(row.record, row.pieces ?? undefined))
    }
    for (const id of ids) {
      const prev = index.get(id)
      if (found.has(id) || prev === undefined || prev !== before.get(id)) continue
      gone.set(id, prev)
      this.#changedSinceRead?.add(id)
      index.delete(id)
    }
    const foundAgents = new Set<string>()
    for (const row of agents?.rows ?? []) {
      foundAgents.add(row.record.name)
      if (this.#agents.get(row.record.name) === agentsBefore.get(row.record.name)) this.#agents.set(row.record.name, row.record)
    }
    for (const name of names) if (!foundAgents.has(name) && this.#agents.get(name) === agentsBefore.get(name)) this.#agents.delete(name)
    return gone
  }

  /**
   * What a local write would have announced, for events written elsewhere.
   * Records are as they are now: a transition is announced only if the
   * transfer is still in the state it went to (a later event of the batch
   * says the rest).
   */
  #announcements (events: StoreEvent[], gone: Map<string, TransferRecord>): Array<() => void> {
    const out: Array<() => void> = []
    for (const event of events) {
      const [kind, name, what] = event.topic.split('.')
      if (kind === 'transfer') {
        const rec = this.#index.get(name)
        const data = event.data as { from?: TransferState | null, to?: TransferState }
        if (what === 'deleted') {
          const prev = gone.get(name)
          if (prev !== undefined) out.push(() => { this.#emitNow('removed', prev) })
        } else if (rec !== undefined && what === 'state' && data.to === rec.state) {
          if (data.from === null) out.push(() => { this.#emitNow('created', rec) })
          else if (data.from !== undefined) out.push(() => { this.#emitNow('transition', rec, data.from as TransferState) })
        } else if (rec !== undefined && what !== 'state') {
          out.push(() => { this.#emitNow('progress', rec) })
        }
      } else if (kind === 'agent') {
        const rec = this.#agents.get(name)
        if (rec !== undefined) out.push(() => { this.#emitNow('agent', rec) })
      }
      out.push(() => { this.#emitNow('event', event) })
    }
    return out
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

/**
 * Tells the other replicas (and this one's listener) what groups committed,
 * in a transaction of its own once they have committed, on a connection
 * of the pool; no writer waits for it.
 * PostgreSQL serializes every transaction that notifies, from its commit
 * until its WAL flush is done (a lock on the notification queue, held so
 * that notifications arrive in commit order): notifying inside the group's
 * transaction made the replicas' commits, each with its fsync, run one at a
 * time. This transaction writes nothing but its commit record, so its
 * commit does not wait for the disk and holds that lock only briefly.
 * If it fails, the notification is lost: the other replicas hear of these
 * events with the next one (its payload is a higher seq, and a reader reads
 * everything up to it), at reconnection, or at their next catch-up
 * (CATCH_UP_MS) at the latest. '' when there is nothing to say.
 */
function notifySql (notice: Notice): string {
  const notes: string[] = []
  if (notice.seq > 0) notes.push(`SELECT pg_notify('${EVENTS_CHANNEL}', '${notice.seq}')`)
  for (const key of notice.keys) notes.push(`SELECT pg_notify('${CHANGES_CHANNEL}', '${('a' + key).replaceAll("'", "''")}')`)
  return notes.length === 0 ? '' : `BEGIN; SET LOCAL synchronous_commit = off; ${notes.join('; ')}; COMMIT`
}

/** Keys of watched aux ranges the writes change: each is announced to every replica (CHANGES_CHANNEL). */
function watchedKeys (writes: GroupWrite[]): Set<string> {
  const out = new Set<string>()
  for (const w of writes) for (const key of w.ops.aux.keys()) if (WATCHED_AUX.some(prefix => key.startsWith(prefix))) out.add(key)
  return out
}

function withPieces (record: TransferRecord, pieces: string[] | undefined): TransferRecord {
  if (record.manifest !== undefined && pieces !== undefined) record.manifest.pieces = pieces
  return record
}

/** The SQLSTATE fenceSql raises (class SC: Staccato's own, apart from PostgreSQL's classes). */
const FENCE_LOST = 'SC001'

/**
 * A statement that fails (FENCE_LOST) unless the leader lease's lock is
 * still granted to session `pid`: sent before COMMIT in the same round trip,
 * it aborts the transaction, and the statements after it (COMMIT) are not run.
 */
function fenceSql (pid: number): string {
  // A two-key advisory lock shows in pg_locks as classid, objid and objsubid 2.
  const held = `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = ${LOCK_CLASS}::int8::oid AND objid = ${LOCKS.leader}::int8::oid AND objsubid = 2 AND pid = ${Math.trunc(pid)} AND granted`
  return `DO $fence$ BEGIN IF NOT EXISTS (${held}) THEN RAISE EXCEPTION 'the leader lease is lost' USING ERRCODE = '${FENCE_LOST}'; END IF; END $fence$`
}

function fenceLost (err: unknown): boolean {
  return err instanceof pg.DatabaseError && err.code === FENCE_LOST
}

function deferred (): Deferred {
  let resolve!: (clear: boolean) => void
  let reject!: (err: unknown) => void
  const promise = new Promise<boolean>((res, rej) => { resolve = res; reject = rej })
  // A write whose caller already failed has nobody waiting on it.
  promise.catch(() => {})
  return { promise, resolve, reject }
}

/**
 * The database refused the data of a write (SQLSTATE class 22, data
 * exception, e.g. a NUL character in a jsonb string; 23, a constraint),
 * rather than failing: that write is left out and the others commit.
 */
function refusal (err: unknown): boolean {
  return err instanceof pg.DatabaseError && /^2[23]/.test(err.code ?? '')
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
