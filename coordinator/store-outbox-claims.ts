/**
 * The webhook outbox shared by several coordinator processes on one
 * database (PostgreSQL replicas). Each entry (`o!…` in the aux area) may carry
 * a claim: the process delivering it and until when (epoch ms). A process
 * claims what is due and not claimed by a live claim; a claim that was not
 * renewed by its expiry (its owner died) is free again, so a live replica
 * takes over a dead one's entries. Claims are taken with FOR UPDATE SKIP
 * LOCKED: two processes claiming at once never get the same entry.
 *
 * The LevelDB store has no such area: one process owns its outbox.
 */
export interface OutboxClaims {
  /**
   * Claims up to `limit` entries due by `now` (their nextAt) whose claim is
   * absent or expired by `now`, for `owner` until `until`; returns them
   * with their new claim, in key order.
   */
  claimOutbox (q: { owner: string, now: number, until: number, limit: number }): Promise<Array<[string, unknown]>>
}

/** An entry's claim, inside the entry itself. */
export interface OutboxClaim { owner: string, until: number }

export function hasOutboxClaims (store: object): store is OutboxClaims {
  return typeof (store as Partial<OutboxClaims>).claimOutbox === 'function'
}
