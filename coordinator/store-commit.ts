import type { Level } from 'level'
import { StaccatoError } from '../mesh/index.ts'

type Op = { type: 'put', key: string, value: unknown } | { type: 'del', key: string }
interface Batch { gen: number, ops: Op[], sync: boolean }
interface Waiter { gen: number, resolve: () => void, reject: (err: unknown) => void }

export interface GroupCommitOptions {
  /** Runs once each batch is on disk, before anyone waiting on it hears back (the store's readers see it from then on). */
  committed?: (gen: number) => void
  /** Awaited before each batch goes to LevelDB: tests hold a commit open with it. */
  beforeWrite?: () => Promise<void>
}

/**
 * Group commit for the transfer store. The store runs its writes one after
 * another, each seeing the state the previous ones left; here their batches
 * are collected while the batch before them is on its way to disk, and then
 * written as one LevelDB batch, so one fsync makes many writes durable
 * instead of one. A write's caller hears back only once its batch (and so
 * every batch before it) is on disk: `ticket()` then `durable(ticket)`.
 *
 * Reads through `view()` see the writes not yet on disk: a point read from
 * them, a range read after they are written. A failed batch leaves memory
 * ahead of the disk: every later write fails too (as LevelDB itself does
 * after a failed sync), until a restart reloads the store from disk.
 */
export class GroupCommit {
  readonly #db: Level<string, unknown>
  #pending: Batch | undefined
  #writing: Batch | undefined
  #lastGen = 0
  #committed = 0
  #failure: StaccatoError | undefined
  #waiters: Waiter[] = []
  /** The newest value of each key in a batch not yet on disk, with that batch's gen. */
  readonly #overlay = new Map<string, { op: Op, gen: number }>()

  readonly #opts: GroupCommitOptions

  constructor (db: Level<string, unknown>, opts: GroupCommitOptions = {}) {
    this.#db = db
    this.#opts = opts
  }

  /** Queues a batch behind every earlier one; it goes to disk with the next group. */
  write (ops: Op[], sync: boolean): void {
    if (this.#failure !== undefined) throw this.#failure
    if (ops.length === 0) return
    this.#pending ??= { gen: ++this.#lastGen, ops: [], sync: false }
    const batch = this.#pending
    for (const op of ops) {
      batch.ops.push(op)
      this.#overlay.set(op.key, { op, gen: batch.gen })
    }
    batch.sync ||= sync
    this.#kick()
  }

  /** Where the writes made so far stand: pass it to durable(). */
  ticket (): number {
    return this.#pending?.gen ?? this.#writing?.gen ?? this.#committed
  }

  /** Resolves once every batch up to the ticket is on disk; rejects if one of them failed. */
  durable (ticket: number): Promise<void> {
    if (ticket <= this.#committed) return Promise.resolve()
    if (this.#failure !== undefined) return Promise.reject(this.#failure)
    return new Promise((resolve, reject) => { this.#waiters.push({ gen: ticket, resolve, reject }) })
  }

  async get (key: string): Promise<unknown> {
    const entry = this.#overlay.get(key)
    if (entry === undefined) return await this.#db.get(key)
    // What LevelDB's JSON encoding would give back: a copy, never the object that was put.
    return entry.op.type === 'put' ? JSON.parse(JSON.stringify(entry.op.value)) as unknown : undefined
  }

  /** Writes everything queued so far and waits for it (errors are left to the writes' own callers). */
  async flushed (): Promise<void> {
    await this.durable(this.ticket()).catch(() => {})
  }

  /**
   * The LevelDB handle the store's code uses: writes join the group, reads see
   * them, anything else goes to LevelDB as it is.
   */
  view (): Level<string, unknown> {
    const db = this.#db
    const write = (ops: Op[], sync: boolean): void => { this.write(ops, sync) }
    const flushed = async (): Promise<void> => { await this.flushed() }
    const get = async (key: string): Promise<unknown> => await this.get(key)
    const accepted = (run: () => void): Promise<void> => {
      try {
        run()
        return Promise.resolve()
      } catch (err) {
        return Promise.reject(err)
      }
    }
    const ranged = (method: 'keys' | 'values' | 'iterator') => (options?: object): unknown => lazyIterator(async () => {
      await flushed()
      return (db[method] as (o?: object) => AsyncIterableIterator<unknown> & IteratorLike)(options)
    })
    const overrides: Record<string, unknown> = {
      batch: (ops: Op[], options?: { sync?: boolean }) => accepted(() => write(ops, options?.sync === true)),
      put: (key: string, value: unknown, options?: { sync?: boolean }) => accepted(() => write([{ type: 'put', key, value }], options?.sync === true)),
      del: (key: string, options?: { sync?: boolean }) => accepted(() => write([{ type: 'del', key }], options?.sync === true)),
      get,
      getMany: async (keys: string[]) => await Promise.all(keys.map(get)),
      has: async (key: string) => await get(key) !== undefined,
      keys: ranged('keys'),
      values: ranged('values'),
      iterator: ranged('iterator'),
      close: async () => {
        await flushed()
        await db.close()
      }
    }
    return new Proxy(db, {
      get (target, prop, receiver) {
        if (typeof prop === 'string' && Object.hasOwn(overrides, prop)) return overrides[prop]
        const value = Reflect.get(target, prop, receiver) as unknown
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
      }
    })
  }

  #kick (): void {
    if (this.#writing !== undefined || this.#pending === undefined) return
    const batch = this.#pending
    this.#pending = undefined
    if (this.#failure !== undefined) {
      this.#settle(batch.gen)
      return
    }
    this.#writing = batch
    const gate = this.#opts.beforeWrite
    const written = gate !== undefined ? gate().then(async () => { await this.#db.batch(batch.ops, { sync: batch.sync }) }) : this.#db.batch(batch.ops, { sync: batch.sync })
    written.then(() => {
      this.#committed = batch.gen
      for (const op of batch.ops) if (this.#overlay.get(op.key)?.gen === batch.gen) this.#overlay.delete(op.key)
      this.#opts.committed?.(batch.gen)
    }, (err: unknown) => {
      this.#failure = new StaccatoError('unavailable', `the store could not write to disk (${String(err)}); restart the coordinator`, true)
    }).finally(() => {
      this.#writing = undefined
      this.#settle(batch.gen)
      this.#kick()
    })
  }

  #settle (upTo: number): void {
    // One pass: with a waiter per write in flight, filtering twice was quadratic.
    const waiting: Waiter[] = []
    for (const w of this.#waiters) {
      if (w.gen > upTo && this.#failure === undefined) waiting.push(w)
      else if (w.gen <= this.#committed) w.resolve()
      else w.reject(this.#failure)
    }
    this.#waiters = waiting
  }
}

interface IteratorLike {
  all (): Promise<unknown[]>
  next (): Promise<unknown>
  nextv (size: number): Promise<unknown[]>
  close (): Promise<void>
}

/** A LevelDB iterator opened only when first used, after the writes before it are on disk. */
function lazyIterator (open: () => Promise<AsyncIterableIterator<unknown> & IteratorLike>): IteratorLike & AsyncIterable<unknown> {
  let it: Promise<AsyncIterableIterator<unknown> & IteratorLike> | undefined
  const get = async (): Promise<AsyncIterableIterator<unknown> & IteratorLike> => await (it ??= open())
  return {
    all: async () => await (await get()).all(),
    next: async () => await (await get()).next(),
    nextv: async (size: number) => await (await get()).nextv(size),
    close: async () => { if (it !== undefined) await (await it).close() },
    async * [Symbol.asyncIterator] () {
      const opened = await get()
      try {
        for await (const item of opened) yield item
      } finally {
        await opened.close()
      }
    }
  }
}
