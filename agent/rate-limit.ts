import { Serial } from '../mesh/index.ts'
import { systemClock } from './copy/clock.ts'
import type { Clock } from './copy/clock.ts'

/**
 * A token bucket in bytes per second, shared by every transfer of an agent in
 * one direction. A chunk larger than the burst still passes (after waiting for
 * its share), so a large frame cannot deadlock a small bucket.
 */
export class TokenBucket {
  readonly rate: number
  private readonly burst: number
  private tokens: number
  private readonly clock: Clock
  private last: number
  private readonly queue = new Serial()

  constructor (bytesPerSecond: number, burstBytes = Math.max(bytesPerSecond / 10, 256 * 1024), clock: Clock = systemClock) {
    this.rate = bytesPerSecond
    this.burst = burstBytes
    this.tokens = burstBytes
    this.clock = clock
    this.last = clock.now()
  }

  /** Resolves when `bytes` may be sent; callers are served in order. */
  async take (bytes: number, signal?: AbortSignal): Promise<void> {
    await this.queue.run(async () => {
      this.refill()
      this.tokens -= bytes
      if (this.tokens < 0) await this.clock.sleep(Math.ceil((-this.tokens / this.rate) * 1000), signal)
    })
  }

  private refill (): void {
    const now = this.clock.now()
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate)
    this.last = now
  }
}
