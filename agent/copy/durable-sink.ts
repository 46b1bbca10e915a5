import type { Writer } from '../../protocols/index.ts'
import type { JournalEntry } from '../journal.ts'
import type { Clock } from './clock.ts'

export interface DurableSinkOptions {
  writer: Writer
  /** Where the durable offset goes; only ever called for bytes the writer reported synced. */
  journal: { commitOffset: (entry: JournalEntry, offset: number) => Promise<void> }
  entry: JournalEntry
  /** Digest of the bytes written so far (without `hash`, a hash stage before the sink runs ahead of it by exactly the chunk being written). */
  prefixDigest: () => string | undefined
  clock: Clock
  /** Sync and journal after this many bytes… */
  syncEveryBytes: number
  /** …or after this long, whichever comes first, so a slow link loses little on a crash. */
  syncEveryMs: number
  onJournaled?: () => void
  /**
   * The copy's hash: each chunk goes into it beside its own write (this thread
   * hashes while libuv's writes to the file) and before that write's end can be
   * journaled, so prefixDigest() covers exactly the bytes written.
   */
  hash?: (chunk: Uint8Array) => void
  /**
   * write() returns once the chunk is handed to the writer and hashed, with the
   * previous chunk's write done: one write stays in flight while the caller
   * fetches and hashes the next chunk. Only for callers that never reuse a
   * chunk's memory after handing it over (a reader with reuseBuffers does).
   */
  writeBehind?: boolean
}

/**
 * Chunks under this are only copied into the file writer's coalescing buffer
 * (protocols/file-writer.ts writes 64 KiB or more directly): there is no
 * write to hash beside, so they are hashed at once.
 */
const HASH_BESIDE_BYTES = 64 * 1024

/**
 * The destination end of a copy: writes chunks, and owns when they are synced
 * and journaled. An offset (with the digest of the bytes before it) is journaled
 * only after the writer reported at least that many bytes durable, so the
 * journal never claims bytes a power cut could take.
 *
 * One sync at a time runs beside the copy while later bytes keep coming:
 * waiting for the disk every few MiB halved file → file throughput. A disk
 * slower than the network holds the copy one sync interval behind.
 */
export class DurableSink {
  private readonly opts: DurableSinkOptions
  private written: number
  /** Bytes handed to the writer (and hashed): `written` plus the write in flight. */
  private handed: number
  /** The write in flight (writeBehind), awaited by the next write and by settle(). */
  private inFlight: Promise<void> | undefined
  private sinceSync = 0
  private lastSync: number
  private syncing: Promise<void> | undefined
  private syncError: unknown

  constructor (opts: DurableSinkOptions) {
    this.opts = opts
    this.written = opts.entry.durableOffset
    this.handed = this.written
    this.lastSync = opts.clock.now()
  }

  /** Bytes written so far, durable or not. */
  get offset (): number {
    return this.written
  }

  async write (chunk: Uint8Array): Promise<void> {
    this.throwIfFailed()
    const writing = this.opts.writer.write(chunk)
    const { hash } = this.opts
    if (hash !== undefined) {
      // Awaited below, after the hash; a failure meanwhile is not unhandled.
      writing.catch(() => {})
      // The write reaches the thread pool only after a few promise hops: let it start, then hash beside it.
      // A receiver hashing and writing one after the other was the serial bottleneck of a copy.
      if (chunk.byteLength >= HASH_BESIDE_BYTES) await new Promise(resolve => setImmediate(resolve))
      hash(chunk)
    }
    this.handed += chunk.byteLength
    const length = chunk.byteLength
    const done = writing.then(() => { this.written += length })
    if (this.opts.writeBehind === true) {
      // The previous write: its failure surfaces here, one chunk late.
      const previous = this.inFlight
      this.inFlight = done
      done.catch(() => {})
      await previous
    } else {
      await done
    }
    this.sinceSync += chunk.byteLength
    if (this.sinceSync >= this.opts.syncEveryBytes || this.opts.clock.now() - this.lastSync >= this.opts.syncEveryMs) {
      // Only the sync: the write in flight carries on, and this sync covers it.
      await this.syncing
      this.syncing = undefined
      this.throwIfFailed()
      this.startSync()
    }
  }

  /** Waits for the sync under way; throws what it failed with. */
  async settle (): Promise<void> {
    const inFlight = this.inFlight
    this.inFlight = undefined
    await inFlight
    await this.syncing
    this.syncing = undefined
    this.throwIfFailed()
  }

  /** Syncs what is left and makes the object visible at the target. */
  async commit (): Promise<void> {
    await this.settle()
    await this.opts.writer.commit()
  }

  /** Ends the write after a failure: waits for the sync under way (its error is the lesser one) and aborts the writer. */
  async abort (keepPartial: boolean): Promise<void> {
    await this.inFlight?.catch(() => {})
    this.inFlight = undefined
    await this.syncing
    this.syncing = undefined
    // The transfer's own error is what gets reported; an abort that fails too leaves at most a partial, which the next attempt resumes or replaces.
    await this.opts.writer.abort({ keepPartial }).catch(() => {})
  }

  private startSync (): void {
    const { writer, journal, entry } = this.opts
    // Everything handed over is hashed and queued in the writer before this sync, which covers it.
    const offset = this.handed
    const digest = this.opts.prefixDigest()
    this.sinceSync = 0
    this.lastSync = this.opts.clock.now()
    this.syncing = (async () => {
      const durable = await writer.sync()
      // The digest covers exactly the bytes before `offset`: journal that, and only if it is on disk.
      if (durable < offset) return
      entry.prefixDigest = digest
      await journal.commitOffset(entry, offset)
      this.opts.onJournaled?.()
    })().catch(err => { this.syncError ??= err })
  }

  private throwIfFailed (): void {
    if (this.syncError !== undefined) throw this.syncError
  }
}
