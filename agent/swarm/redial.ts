/** How often a destination redials participants it is not connected to (not joined yet, restarted, back). */
export const REDIAL_MS = 500
/**
 * A peer that keeps refusing (it dropped us) or is down is dialed less and
 * less often, down to this: short enough that a restarted peer is back within
 * seconds, long enough that a peer refusing us costs nothing.
 */
export const REDIAL_MAX_MS = 8_000
/** The failure at which the back-off reaches REDIAL_MAX_MS (500 ms · 2^4). */
export const REDIAL_AT_MAX = 5

/**
 * When a destination dials each participant again after failing to reach it:
 * exponential back-off per peer, forgotten on success — and forgotten when the
 * coordinator names the peers afresh. The coordinator re-sends a join when a
 * participant came back (at a new address, after a restart): waiting out a
 * back-off grown while it was down kept it from its peers for up to 8 s,
 * during which it fetched from the seed alone (a tree's restarted destination
 * took ~25 s for ~4 s of data, the seed uploading 1.7 × the tree).
 */
export class RedialBackoff {
  private readonly failures = new Map<string, { count: number, retryAt: number }>()

  /** Whether `peerId` may be dialed at `now` (ms). */
  due (peerId: string, now: number): boolean {
    const f = this.failures.get(peerId)
    return f === undefined || now >= f.retryAt
  }

  /** A dial failed at `now`: returns how many in a row have. */
  failed (peerId: string, now: number): number {
    const count = (this.failures.get(peerId)?.count ?? 0) + 1
    this.failures.set(peerId, { count, retryAt: now + Math.min(REDIAL_MS * 2 ** (count - 1), REDIAL_MAX_MS) })
    return count
  }

  succeeded (peerId: string): void {
    this.failures.delete(peerId)
  }

  /** The coordinator named these peers again (one may be back): they are dialed at once. */
  renamed (peerIds: Iterable<string>): void {
    for (const id of peerIds) this.failures.delete(id)
  }
}
