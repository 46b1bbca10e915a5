import type { WriterAt } from '../../protocols/index.ts'
import type { JournalEntry } from '../journal.ts'
import type { Clock } from './clock.ts'
import { contiguousEnd } from './ranges.ts'
import type { Range } from './ranges.ts'

export interface RangeSinkOptions {
  writer: WriterAt
  journal: { put: (entry: JournalEntry) => Promise<void> }
  /** Journaled with every sync: its ranges' `done` and durableOffset (the durable prefix without a gap) are set here. */
  entry: JournalEntry
  ranges: Range[]
  clock: Clock
  /** Sync and journal after this many bytes over all ranges… */
  syncEveryBytes: number
  /** …or after this long, whichever comes first. */
  syncEveryMs: number
  onJournaled?: () => void
}

/**
 * The destination end of a multi-stream copy: each range's bytes go at its
 * own offset, one after the other within the range. Every sync covers all
 * ranges at once (one fdatasync of the partial), and only then are the
 * offsets written before it journaled, so a range's `done` never claims bytes
 * a power cut could take. One sync runs at a time, beside the writes.
 */
export class RangeSink {
  /** Bytes written from each range's start, durable or not. */
  readonly written: number[]
  private readonly opts: RangeSinkOptions
  private sinceSync = 0
  private lastSync: number
  private syncing: Promise<void> | undefined
  private syncError: unknown

  constructor (opts: RangeSinkOptions) {
    this.opts = opts
    this.written = opts.ranges.map(r => r.done)
    this.lastSync = opts.clock.now()
  }

  async write (i: number, chunk: Uint8Array): Promise<void> {
    this.throwIfFailed()
    const r = this.opts.ranges[i]
    await this.opts.writer.writeAt(r.start + this.written[i], [chunk])
    this.written[i] += chunk.byteLength
    this.sinceSync += chunk.byteLength
    if (this.due()) {
      // The disk sets the pace: a stream that finds a sync due waits for the one under way.
      await this.settle()
      if (this.due() && this.syncing === undefined) this.startSync()
    }
  }

  /** Waits for the sync under way; throws what it failed with. */
  async settle (): Promise<void> {
    const s = this.syncing
    await s
    if (this.syncing === s) this.syncing = undefined
    this.throwIfFailed()
  }

  private due (): boolean {
    return this.sinceSync >= this.opts.syncEveryBytes || this.opts.clock.now() - this.lastSync >= this.opts.syncEveryMs
  }

  private startSync (): void {
    const { writer, journal, entry, ranges } = this.opts
    // Only what was written before the sync started is durable after it.
    const snapshot = [...this.written]
    this.sinceSync = 0
    this.lastSync = this.opts.clock.now()
    this.syncing = (async () => {
      await writer.sync()
      for (const [i, r] of ranges.entries()) r.done = Math.max(r.done, snapshot[i])
      entry.ranges = ranges.map(r => ({ ...r }))
      entry.durableOffset = contiguousEnd(ranges, ranges.map(r => r.done))
      await journal.put(entry)
      this.opts.onJournaled?.()
    })().catch(err => { this.syncError ??= err })
  }

  private throwIfFailed (): void {
    if (this.syncError !== undefined) throw this.syncError
  }
}
