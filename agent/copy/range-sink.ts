import type { RangeOutput, WriterAt } from '../../protocols/index.ts'
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
  /** More of the ranges is in the file (`inFile` grew): what the ordered hash may read back. */
  onInFile?: () => void
}

/**
 * The destination end of a multi-stream copy: each range's bytes go at its
 * own offset, one after the other within the range. Every sync covers all
 * ranges at once (one fdatasync of the partial), and only then are the
 * offsets written before it journaled, so a range's `done` never claims bytes
 * a power cut could take. One sync runs at a time, beside the writes.
 *
 * Where the writer offers it (WriterAt.openRange), each range is written
 * through its own sequential output, which may stage bytes (to write whole
 * blocks past the page cache): every sync flushes them first, and `inFile`
 * says how much of each range the file holds.
 */
export class RangeSink {
  /** Bytes written from each range's start, durable or not. */
  readonly written: number[]
  /** Bytes from each range's start that are in the file (readable back), durable or not. */
  readonly inFile: number[]
  private outputs: Array<RangeOutput | undefined> = []
  private readonly opts: RangeSinkOptions
  private sinceSync = 0
  private lastSync: number
  private syncing: Promise<void> | undefined
  private syncError: unknown

  constructor (opts: RangeSinkOptions) {
    this.opts = opts
    this.written = opts.ranges.map(r => r.done)
    this.inFile = [...this.written]
    this.lastSync = opts.clock.now()
  }

  /** Opens each unfinished range's output, where the writer has them. */
  async open (): Promise<void> {
    const { writer, ranges } = this.opts
    if (writer.openRange === undefined) return
    this.outputs = await Promise.all(ranges.map(async (r, i) => r.start + this.written[i] < r.end ? await writer.openRange?.(r.start + this.written[i]) : undefined))
  }

  async write (i: number, chunk: Uint8Array): Promise<void> {
    this.throwIfFailed()
    const r = this.opts.ranges[i]
    const out = this.outputs[i]
    if (out !== undefined) await out.write(chunk)
    else await this.opts.writer.writeAt(r.start + this.written[i], [chunk])
    this.written[i] += chunk.byteLength
    if (out === undefined) this.inFile[i] = this.written[i]
    this.sinceSync += chunk.byteLength
    if (this.due()) {
      // The disk sets the pace: a stream that finds a sync due waits for the one under way.
      await this.settle()
      if (this.due() && this.syncing === undefined) this.startSync()
    }
  }

  /** After the last write: every range's bytes into the file (not synced: commit does that), and their outputs closed. */
  async finish (): Promise<void> {
    await this.settle()
    await this.flush([...this.written])
    await this.close()
  }

  /** Releases the ranges' outputs (their staged bytes are dropped). */
  async close (): Promise<void> {
    const outputs = this.outputs
    this.outputs = []
    await Promise.all(outputs.map(async o => await o?.close()))
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
      await this.flush(snapshot)
      await writer.sync()
      for (const [i, r] of ranges.entries()) r.done = Math.max(r.done, snapshot[i])
      entry.ranges = ranges.map(r => ({ ...r }))
      entry.durableOffset = contiguousEnd(ranges, ranges.map(r => r.done))
      await journal.put(entry)
      this.opts.onJournaled?.()
    })().catch(err => { this.syncError ??= err })
  }

  /** Flushes every range's output; the bytes in `upTo` (written before the flush started) are then in the file. */
  private async flush (upTo: number[]): Promise<void> {
    if (this.outputs.length === 0) return
    await Promise.all(this.outputs.map(async o => await o?.flush()))
    for (const [i, n] of upTo.entries()) this.inFile[i] = Math.max(this.inFile[i], n)
    this.opts.onInFile?.()
  }

  private throwIfFailed (): void {
    if (this.syncError !== undefined) throw this.syncError
  }
}
