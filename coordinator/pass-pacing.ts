/**
 * A scheduling pass reads the whole queue (the scheduler contract gives it
 * every queued transfer), so its cost grows with the queue; changes that ask
 * for one arrive with every commit (and, on a leader among replicas, with
 * every batch of the others' events it hears). Back to back, passes over a
 * long queue took more than a quarter of the leader's event loop under a
 * submit load (bench:api, 13,000 queued: 2.2 CPU-s of its 3.4 during the
 * phase), holding up the requests it serves. Paced, a pass waits after the
 * last one for a multiple of the time that one spent reading the queue (its
 * scheduler's decide(); the commits a pass awaits are not loop time, and
 * counting them would hold back the next pass by seconds), so passes take at
 * most 1 / (1 + PASS_PAUSE_FACTOR) of the loop; the changes that arrive
 * meanwhile make one pass.
 */

/** Passes this short are never paced: a queue of a few thousand costs well under a millisecond a pass. */
export const PASS_FREE_MS = 1
/**
 * Passes take at most a fifth of the loop under a stream of changes; a new
 * transfer is then looked at up to 4 passes' time later (about 20 ms with
 * 13,000 queued on this 2-core host, where a pass takes 3–5 ms).
 */
export const PASS_PAUSE_FACTOR = 4

/** How long to wait before the next pass (ms), `sinceMs` after the last one, whose reading of the queue took `lastMs`. */
export function passDelay (lastMs: number, sinceMs: number): number {
  if (!(lastMs >= PASS_FREE_MS)) return 0
  return Math.max(0, lastMs * PASS_PAUSE_FACTOR - sinceMs)
}
