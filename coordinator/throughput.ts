/** 10 s buckets × 360: the last hour, as issue #19 asks, at a resolution a chart of a few hundred pixels shows. */
export const BUCKET_MS = 10_000
export const BUCKETS = 360
/** Agents whose series are kept; past it the least recently active goes (5.6 KiB each). */
const MAX_AGENTS = 1024

export interface ThroughputSeries {
  bucketSeconds: number
  /** Start of the oldest bucket and of the one after the newest (ISO times). */
  from: string
  to: string
  /** Bytes received and sent in each bucket, oldest first. */
  rx: number[]
  tx: number[]
}

interface Ring { rx: Float64Array, tx: Float64Array, last: number }

/**
 * Bytes per agent per 10 s over the last hour, in memory: fixed rings
 * indexed by bucket number, so memory does not grow with time or traffic.
 * A bucket is cleared when its slot is reused for a newer bucket.
 */
export class Throughput {
  private readonly agents = new Map<string, Ring>()
  private readonly now: () => number

  constructor (now: () => number = Date.now) {
    this.now = now
  }

  add (agent: string, direction: 'rx' | 'tx', bytes: number): void {
    if (!(bytes > 0)) return
    const bucket = Math.floor(this.now() / BUCKET_MS)
    let ring = this.agents.get(agent)
    if (ring === undefined) {
      if (this.agents.size >= MAX_AGENTS) this.agents.delete(this.agents.keys().next().value as string)
      ring = { rx: new Float64Array(BUCKETS), tx: new Float64Array(BUCKETS), last: bucket }
    } else {
      this.agents.delete(agent)
      advance(ring, bucket)
    }
    this.agents.set(agent, ring)
    ring[direction][bucket % BUCKETS] += bytes
  }

  /**
   * An agent's current rate in bytes per second: what it received and sent
   * over the last RATE_BUCKETS buckets (the newest one partly elapsed),
   * divided by the time they span so far.
   */
  rate (agent: string): { rx: number, tx: number } {
    const ring = this.agents.get(agent)
    const now = this.now()
    const end = Math.floor(now / BUCKET_MS)
    if (ring === undefined || ring.last <= end - RATE_BUCKETS) return { rx: 0, tx: 0 }
    let rx = 0
    let tx = 0
    for (let bucket = end - RATE_BUCKETS + 1; bucket <= Math.min(end, ring.last); bucket++) {
      rx += ring.rx[bucket % BUCKETS]
      tx += ring.tx[bucket % BUCKETS]
    }
    const seconds = ((RATE_BUCKETS - 1) * BUCKET_MS + (now - end * BUCKET_MS)) / 1000
    return { rx: rx / seconds, tx: tx / seconds }
  }

  /** One agent's series, or the whole mesh's (the sum over agents) when `agent` is undefined. */
  series (agent?: string): ThroughputSeries {
    const end = Math.floor(this.now() / BUCKET_MS)
    const rx = new Array<number>(BUCKETS).fill(0)
    const tx = new Array<number>(BUCKETS).fill(0)
    const rings = agent !== undefined ? [this.agents.get(agent)].filter(r => r !== undefined) : [...this.agents.values()]
    for (const ring of rings) {
      for (let i = 0; i < BUCKETS; i++) {
        const bucket = end - BUCKETS + 1 + i
        // Slots of buckets newer than the ring's last write, or older than the hour, hold other buckets' bytes.
        if (bucket > ring.last || bucket <= ring.last - BUCKETS) continue
        rx[i] += ring.rx[bucket % BUCKETS]
        tx[i] += ring.tx[bucket % BUCKETS]
      }
    }
    return { bucketSeconds: BUCKET_MS / 1000, from: new Date((end - BUCKETS + 1) * BUCKET_MS).toISOString(), to: new Date((end + 1) * BUCKET_MS).toISOString(), rx, tx }
  }
}

/** The window of `Throughput.rate`: the last three buckets, so that one quiet 10 s does not read as idle. */
const RATE_BUCKETS = 3

/** Clears the slots of the buckets between the ring's last write and `bucket`. */
function advance (ring: Ring, bucket: number): void {
  if (bucket <= ring.last) return
  for (let b = ring.last + 1; b <= bucket && b <= ring.last + BUCKETS; b++) {
    ring.rx[b % BUCKETS] = 0
    ring.tx[b % BUCKETS] = 0
  }
  ring.last = bucket
}
