import { SourceChangedError, noteGarbage } from '../../mesh/index.ts'
import type { Hasher } from './checksum.ts'

/**
 * Bytes asked for per read back: large reads keep the per-call cost small
 * beside the hash's (a reader past the page cache returns at most its
 * buffer, 1 MiB).
 */
const READ_BACK_BYTES = 4 * 1024 * 1024

/**
 * The whole object's digest when its ranges arrive out of order: the hash
 * follows the written prefix (the bytes from 0 up to the first gap). A
 * chunk handed to the writer exactly at the front is hashed as it goes by
 * (offer), as the single-stream copy hashes beside its write; the rest is
 * read back from the partial once it is in the file. It hashes exactly the
 * bytes that will be renamed into place, in order, so the digest means what
 * a single stream's does.
 */
export class OrderedHash {
  private readonly hasher: Hasher
  private readonly readAt: (offset: number, length: number) => Promise<Uint8Array>
  /** readAt's bytes are in memory it reuses (not garbage for the GC). */
  private readonly reused: boolean
  private front = 0
  private target = 0
  private pumping: Promise<void> | undefined
  private error: unknown

  constructor (hasher: Hasher, readAt: (offset: number, length: number) => Promise<Uint8Array>, reused = false) {
    this.hasher = hasher
    this.readAt = readAt
    this.reused = reused
  }

  /**
   * A chunk about to be written at `offset`: hashed now if it is the next
   * byte of the prefix and no read-back is under way (else it is read back
   * later, once in the file). Synchronous, so the caller may reuse the chunk
   * once its write is done.
   */
  offer (offset: number, chunk: Uint8Array): void {
    if (this.pumping !== undefined || this.error !== undefined || offset !== this.front) return
    this.hasher.update(chunk)
    this.front += chunk.byteLength
  }

  /** The prefix in the file now reaches `end`: hash up to it in the background. */
  advance (end: number): void {
    if (end > this.target) this.target = end
    // No pump for nothing: while one is set, offer() hashes nothing (the front would move under its read).
    if (this.front >= this.target) return
    this.pumping ??= this.pump().catch(err => { this.error ??= err }).finally(() => { this.pumping = undefined })
  }

  /** Hashes up to `size` (every range is written) and returns the digest. */
  async digest (size: number): Promise<string> {
    // Bounded: each round's pump moves the front forward to the target, or fails.
    while (this.error === undefined && this.front < size) {
      // A pump that was just ending when the last range advanced may have missed it: start one again.
      this.advance(size)
      await this.pumping
    }
    if (this.error !== undefined) throw this.error
    return this.hasher.digest()
  }

  private async pump (): Promise<void> {
    // One read runs ahead while the bytes before it are hashed (readAt's bytes stay valid that long: WriterAt.readBack).
    let at = this.front
    const readNext = (): Promise<Uint8Array> | undefined => at < this.target ? this.readAt(at, Math.min(READ_BACK_BYTES, this.target - at)) : undefined
    let next = readNext()
    // Bounded: every round moves the front forward by at least one byte, up to the target.
    while (next !== undefined) {
      const bytes = await next
      if (bytes.byteLength === 0) throw new SourceChangedError('the partial file returned no bytes where its ranges were written')
      at += bytes.byteLength
      next = readNext()
      // Its failure is thrown by the await above in the next round; until then it must not go unhandled.
      next?.catch(() => {})
      this.hasher.update(bytes)
      this.front += bytes.byteLength
      if (!this.reused) noteGarbage(bytes.byteLength)
    }
  }
}
