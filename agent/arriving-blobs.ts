import { NetworkError } from '../mesh/index.ts'

/**
 * Byte ranges of one blob that hold verified bytes: kept merged and sorted,
 * so that "how much is there from here on" is one look-up. Pure.
 */
export class Ranges {
  private spans: Array<[number, number]> = []

  add (start: number, end: number): void {
    if (end <= start) return
    const out: Array<[number, number]> = []
    let s = start
    let e = end
    for (const [a, b] of this.spans) {
      if (b < s || a > e) out.push([a, b])
      else { s = Math.min(s, a); e = Math.max(e, b) }
    }
    out.push([s, e])
    out.sort((x, y) => x[0] - y[0])
    this.spans = out
  }

  /** How many bytes from `at` on are held without a gap (0 when `at` is not held). */
  runFrom (at: number): number {
    for (const [a, b] of this.spans) if (a <= at && at < b) return b - at
    return 0
  }

  get total (): number {
    return this.spans.reduce((n, [a, b]) => n + b - a, 0)
  }
}

/** One blob a destination is writing piece by piece. */
export class Arrival {
  readonly digest: string
  readonly size: number
  private readonly readAt: (offset: number, length: number) => Promise<Uint8Array>
  private readonly held = new Ranges()
  private waiters: Array<() => void> = []
  private state: 'arriving' | 'committing' | 'committed' | 'failed' = 'arriving'
  private reading = 0
  private idle?: () => void

  constructor (digest: string, size: number, readAt: (offset: number, length: number) => Promise<Uint8Array>) {
    this.digest = digest
    this.size = size
    this.readAt = readAt
  }

  get committed (): boolean {
    return this.state === 'committed'
  }

  /** Bytes `[at, at + length)` were written after their piece's sha256 matched the manifest. */
  written (at: number, length: number): void {
    this.held.add(at, at + length)
    this.wake()
  }

  /**
   * Up to `max` verified bytes from `at`, once some are there; undefined once
   * the blob is committed (read it where the blob index finds it). Throws when
   * the distribution gave it up: what a reader already sent stays unconfirmed.
   */
  async next (at: number, max: number, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    // Bounded: every round either returns or waits for a write, a commit, a failure or the reader's abort.
    for (;;) {
      if (signal?.aborted === true) throw new NetworkError('the reader went away')
      if (this.state === 'failed') throw new NetworkError(`${this.digest}: the distribution bringing this blob stopped`)
      if (this.state === 'committed') return undefined
      const run = Math.min(this.held.runFrom(at), max)
      if (run > 0 && this.state === 'arriving') {
        this.reading++
        try {
          return await this.readAt(at, run)
        } finally {
          if (--this.reading === 0) this.idle?.()
        }
      }
      await new Promise<void>(resolve => {
        const done = (): void => { signal?.removeEventListener('abort', done); resolve() }
        this.waiters.push(done)
        signal?.addEventListener('abort', done, { once: true })
      })
    }
  }

  /** Holds new reads and waits for those running: the writer's commit moves the file. */
  async committing (): Promise<void> {
    if (this.state !== 'arriving') return
    this.state = 'committing'
    if (this.reading > 0) await new Promise<void>(resolve => { this.idle = resolve })
    this.idle = undefined
  }

  end (committed: boolean): void {
    if (this.state === 'committed' || this.state === 'failed') return
    this.state = committed ? 'committed' : 'failed'
    this.wake()
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const fn of w) fn()
  }
}

/**
 * The blobs this agent's image distributions are writing right now, by
 * digest: the registry mirror streams them to a client as their pieces land
 * (each verified against the manifest's piece hash before it is written),
 * rather than after the whole image commits.
 */
export class ArrivingBlobs {
  private readonly arriving = new Map<string, Arrival>()

  /** Undefined when another distribution is writing this blob already: readers follow that one. */
  begin (digest: string, size: number, readAt: (offset: number, length: number) => Promise<Uint8Array>): Arrival | undefined {
    if (this.arriving.has(digest)) return undefined
    const a = new Arrival(digest, size, readAt)
    this.arriving.set(digest, a)
    return a
  }

  get (digest: string): Arrival | undefined {
    return this.arriving.get(digest)
  }

  end (a: Arrival, committed: boolean): void {
    a.end(committed)
    if (this.arriving.get(a.digest) === a) this.arriving.delete(a.digest)
  }
}
