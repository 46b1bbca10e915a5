import { Serial } from '../mesh/index.ts'
import { systemClock } from './copy/clock.ts'
import type { Clock } from './copy/clock.ts'

/**
 * The policy of a token bucket, apart from waiting: bytes are reserved at a
 * moment of an injected clock, and the answer is how long the caller must wait
 * before sending them. Tokens may go negative (a debt the next caller waits
 * out), which serves concurrent callers in the order they reserved.
 */
export class TokenLedger {
  readonly rate: number
  readonly burst: number
  private tokens: number
  private last: number

  constructor (bytesPerSecond: number, burstBytes: number, nowMs: number) {
    this.rate = bytesPerSecond
    this.burst = burstBytes
    this.tokens = burstBytes
    this.last = nowMs
  }

  /** Takes `bytes` at `nowMs`; returns the milliseconds to wait before they may go. */
  reserve (bytes: number, nowMs: number): number {
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, nowMs - this.last) / 1000) * this.rate)
    this.last = Math.max(this.last, nowMs)
    this.tokens -= bytes
    return this.tokens < 0 ? (-this.tokens / this.rate) * 1000 : 0
  }
}

/** Burst of a bucket: a tenth of a second at its rate, at least 256 KiB (one frame of most streams). */
export function defaultBurst (bytesPerSecond: number): number {
  return Math.max(bytesPerSecond / 10, 256 * 1024)
}

/**
 * A token bucket in bytes per second, shared by every transfer of an agent in
 * one direction. A chunk larger than the burst still passes (after waiting for
 * its share), so a large frame cannot deadlock a small bucket.
 */
export class TokenBucket {
  readonly rate: number
  private readonly ledger: TokenLedger
  private readonly clock: Clock
  private readonly queue = new Serial()

  constructor (bytesPerSecond: number, burstBytes = defaultBurst(bytesPerSecond), clock: Clock = systemClock) {
    this.rate = bytesPerSecond
    this.clock = clock
    this.ledger = new TokenLedger(bytesPerSecond, burstBytes, clock.now())
  }

  /** Resolves when `bytes` may be sent; callers are served in order. */
  async take (bytes: number, signal?: AbortSignal): Promise<void> {
    await this.queue.run(async () => {
      const wait = this.ledger.reserve(bytes, this.clock.now())
      if (wait > 0) await this.clock.sleep(Math.ceil(wait), signal)
    })
  }
}
