import { countBytes } from '../counters.ts'
import type { AgentCounters } from '../counters.ts'
import type { TokenBucket } from '../rate-limit.ts'
import type { Clock } from './clock.ts'

/** Throttle stage: a chunk passes once the agent's bucket lets its bytes through. */
export async function * throttled (chunks: AsyncIterable<Uint8Array>, bucket: TokenBucket | undefined, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  if (bucket === undefined) return yield * chunks
  for await (const chunk of chunks) {
    await bucket.take(chunk.byteLength, signal)
    yield chunk
  }
}

export interface MeterOptions {
  counters: AgentCounters
  from: string
  to: string
  /** Bytes already in place (a resumed partial): progress counts from there. */
  start: number
  clock: Clock
  everyMs: number
  progress: (bytesDone: number) => void
}

/**
 * Counts the bytes of one copy into the agent's counters and tells the progress
 * callback every `everyMs` how far it got. stop() ends the timer; it is safe to call twice.
 */
export class Meter {
  done: number
  private readonly opts: MeterOptions
  private readonly cancel: () => void

  constructor (opts: MeterOptions) {
    this.opts = opts
    this.done = opts.start
    this.cancel = opts.clock.every(opts.everyMs, () => opts.progress(this.done))
  }

  async * count (chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    const { counters, from, to } = this.opts
    for await (const chunk of chunks) {
      yield chunk
      // Counted once the sink took the chunk (the generator resumes after the consumer's write).
      this.done += chunk.byteLength
      counters.bytesReceived += chunk.byteLength
      countBytes(counters.bytesIn, from, chunk.byteLength)
      countBytes(counters.bytesOut, to, chunk.byteLength)
    }
  }

  stop (): void {
    this.cancel()
  }
}
