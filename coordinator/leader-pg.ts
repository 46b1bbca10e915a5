import { EventEmitter } from 'node:events'
import pg from 'pg'
import { systemClock } from './clock.ts'
import type { Clock, ClockTimer } from './clock.ts'
import type { LeaderLease, LeaseEvents } from './leader-lease.ts'
import { LOCKS, LOCK_CLASS } from './store-pg-schema.ts'

/**
 * How long a leader that stops answering keeps the lease: PostgreSQL ends a
 * session idle this long (idle_session_timeout), which releases its lock.
 * The issue asks for takeover within 10 s of a leader's death; a SIGKILLed
 * leader's socket closes at once, so this bounds only a paused or cut-off
 * leader: 5 s plus one poll stays under 10 s.
 */
export const DEFAULT_LEASE_MS = 5000
/** How often a follower tries to take the lease and the leader shows it is alive: 5 heartbeats per lease. */
export const DEFAULT_POLL_MS = 1000

export interface PgLeaseOptions {
  url: string
  leaseMs?: number
  pollMs?: number
  clock?: Clock
  /** The lease session's application_name (pg_stat_activity shows who leads); default `staccato-coordinator <pid>`. */
  name?: string
  /**
   * Told the backend pid whose lock fences this process's writes when it
   * starts leading, and undefined once it has stopped (PgTransferStore.setFence).
   */
  fence?: (pid: number | undefined) => void
}

/**
 * The OS pid of the coordinator whose lease session holds the leader lock
 * (its application_name, `staccato-coordinator <pid>`), or undefined when
 * none holds it now: for operators' checks and the failover benchmark.
 */
export async function leaseHolderPid (url: string): Promise<number | undefined> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    // A two-key advisory lock shows in pg_locks as classid, objid and objsubid 2.
    const row = (await client.query<{ name: string }>('SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = \'advisory\' AND l.classid = $1::int8::oid AND l.objid = $2::int8::oid AND l.objsubid = 2 AND l.granted', [LOCK_CLASS, LOCKS.leader])).rows[0]
    const pid = Number(/^staccato-coordinator (\d+)$/.exec(row?.name ?? '')?.[1])
    return Number.isInteger(pid) ? pid : undefined
  } finally {
    await client.end()
  }
}

/**
 * The leader lease on PostgreSQL: a session-level advisory lock (LOCKS.leader)
 * held on a connection of its own, rather than a lease row with an expiry.
 * Why: the server releases the lock the moment the holder's connection
 * closes (a killed process loses it at once, with no clock to compare across
 * hosts), and idle_session_timeout (the lease length) ends the session of a
 * leader that stopped sending its heartbeat — paused, or cut off. Fencing: a
 * leader's writes commit only while the lock is still granted to its
 * session's pid (checked in the write's transaction, PgTransferStore.setFence),
 * so an old leader that wakes up after losing the lease cannot act.
 */
export function pgLeaderLease (opts: PgLeaseOptions): LeaderLease {
  return new PgLeaderLease(opts)
}

class PgLeaderLease extends EventEmitter<LeaseEvents> implements LeaderLease {
  readonly #opts: Required<Omit<PgLeaseOptions, 'fence'>> & Pick<PgLeaseOptions, 'fence'>
  #client: pg.Client | undefined
  #leader = false
  #running = false
  #timer: ClockTimer | undefined
  #tick: Promise<void> = Promise.resolve()

  constructor (opts: PgLeaseOptions) {
    super()
    this.#opts = { leaseMs: DEFAULT_LEASE_MS, pollMs: DEFAULT_POLL_MS, clock: systemClock, name: `staccato-coordinator ${process.pid}`, ...opts }
  }

  get leader (): boolean { return this.#leader }

  async start (): Promise<void> {
    if (this.#running) return
    this.#running = true
    await this.#runTick()
  }

  async stop (): Promise<void> {
    this.#running = false
    this.#timer?.cancel()
    await this.#tick
    const client = this.#client
    this.#client = undefined
    this.#stepDown()
    // Closing the session releases the lock: the next replica's poll takes it.
    await client?.end().catch(() => {})
  }

  #runTick (): Promise<void> {
    this.#tick = this.#attempt().finally(() => {
      if (this.#running) this.#timer = this.#opts.clock.setTimeout(() => { void this.#runTick() }, this.#opts.pollMs)
    })
    return this.#tick
  }

  async #attempt (): Promise<void> {
    try {
      const client = this.#client ?? await this.#connect()
      if (this.#leader) {
        // Any statement resets the server's idle timer: this is the heartbeat.
        await client.query('SELECT 1')
        return
      }
      const row = (await client.query<{ ok: boolean, pid: number }>('SELECT pg_try_advisory_lock($1, $2) AS ok, pg_backend_pid() AS pid', [LOCK_CLASS, LOCKS.leader])).rows[0]
      if (row.ok && this.#running) {
        this.#leader = true
        this.#opts.fence?.(row.pid)
        this.emit('change', true)
      }
    } catch {
      // The session is gone (server restart, idle timeout, network): so is the lock. The next tick connects again.
      const client = this.#client
      this.#client = undefined
      this.#stepDown()
      await client?.end().catch(() => {})
    }
  }

  async #connect (): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.#opts.url, keepAlive: true, query_timeout: this.#opts.leaseMs, application_name: this.#opts.name })
    client.on('error', () => {
      if (this.#client === client) this.#client = undefined
      this.#stepDown()
    })
    client.on('end', () => {
      if (this.#client === client) this.#client = undefined
      this.#stepDown()
    })
    await client.connect()
    // PostgreSQL 14 and later; on an older server a paused leader keeps the lease until its connection drops.
    await client.query(`SET idle_session_timeout = ${Math.round(this.#opts.leaseMs)}`).catch((err: unknown) => {
      if ((err as { code?: string }).code !== '42704') throw err
    })
    this.#client = client
    return client
  }

  /** The dispatcher stops (change) before the fence lifts, so that no write of the old leadership commits unfenced. */
  #stepDown (): void {
    if (!this.#leader) return
    this.#leader = false
    this.emit('change', false)
    this.#opts.fence?.(undefined)
  }
}
