/** The deepest a fast peer's queue of our requests gets: four times the average depth (MAX_OUTSTANDING), so one fast peer cannot hold most of what we miss. */
export const MAX_DEPTH = 8
/** Weight of the newest sample in a link's moving average of its rate. */
const ALPHA = 0.3

interface Link {
  /** Bytes per ms, once a piece arrived. */
  rate?: number
  /** Since when we have been waiting on this peer; undefined while nothing is in flight. */
  since?: number
}

/**
 * How many requests to keep in flight to each peer: the same budget as a
 * fixed depth (`base` per peer), shared in proportion to how fast each peer
 * delivers to us — base × its rate ÷ the mean rate of our peers, rounded, at
 * least one. A fixed depth gives a peer that uploads at rate/2 as many
 * requests as one at 4 × rate, so rare pieces wait in the slow one's FIFO
 * queue while the fast one idles: in bench:swarm-sim's bimodal scenario
 * (N = 1,000) the storage hosts, two thirds of the swarm's upload, used 32 % of
 * theirs and p99 was 1.62 × the bound; sharing the depth by rate gives 1.40.
 * Peers that all deliver alike (bench:swarm, the uniform scenario) keep `base`:
 * there, one request per peer instead of two (a fixed 250 ms per peer) made p99 worse (1.43 against 1.36).
 *
 * A link's rate is measured only while we wait on it: from a request sent to
 * an idle link, or from the previous piece while more were in flight, to the
 * next piece. Time in which we asked nothing does not count against it.
 * Pure: the caller passes the clock.
 */
export class RequestPacer<K> {
  private readonly links = new Map<K, Link>()
  private sum = 0
  private rated = 0

  private link (key: K): Link {
    let l = this.links.get(key)
    if (l === undefined) {
      l = {}
      this.links.set(key, l)
    }
    return l
  }

  /** A request goes out to `key`; `idle`: nothing was in flight to it before. */
  requested (key: K, now: number, idle: boolean): void {
    const l = this.link(key)
    if (idle || l.since === undefined) l.since = now
  }

  /** A piece of `bytes` arrived from `key`; `more`: requests to it are still in flight. */
  delivered (key: K, now: number, bytes: number, more: boolean): void {
    const l = this.link(key)
    if (l.since !== undefined) {
      // A piece arriving in the same ms as the last one is part of one burst, not an infinite rate.
      const sample = bytes / Math.max(1, now - l.since)
      if (l.rate === undefined) {
        this.rated++
        l.rate = sample
        this.sum += sample
      } else {
        const next = l.rate + ALPHA * (sample - l.rate)
        this.sum += next - l.rate
        l.rate = next
      }
    }
    l.since = more ? now : undefined
  }

  /** A request to `key` ended without a piece (refused, cancelled); `more` as for delivered. */
  ended (key: K, more: boolean): void {
    const l = this.links.get(key)
    if (l !== undefined && !more) l.since = undefined
  }

  /** The link is gone: it no longer counts in the mean. */
  remove (key: K): void {
    const l = this.links.get(key)
    if (l === undefined) return
    if (l.rate !== undefined) {
      this.rated--
      this.sum -= l.rate
    }
    this.links.delete(key)
    // Rounding drift of the running sum must not outlive the links it came from.
    if (this.rated === 0) this.sum = 0
  }

  /** Requests to keep in flight to `key`: `base` until it has delivered once. */
  depth (key: K, base: number): number {
    const rate = this.links.get(key)?.rate
    if (rate === undefined || this.rated < 2 || this.sum <= 0) return base
    return Math.min(MAX_DEPTH, Math.max(1, Math.round(base * rate * this.rated / this.sum)))
  }
}
