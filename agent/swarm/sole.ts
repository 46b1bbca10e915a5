/**
 * After the seed refuses a piece and names the peers that hold it, ask it
 * again as our sole source only when none of them can serve us: none is
 * connected to us, and none is one we are still connecting to. Asking while a
 * connection to a holder is on its way (slow under load) made the seed send
 * most pieces twice (1.9 × the file with four destinations at load 25).
 * A holder we wait for but that never connects (it cannot reach us, or we it)
 * must not stall us either: after `maxWaits` refusals of the same piece —
 * one a flush tick, about a second apart — we ask alone anyway.
 */
export interface HolderView {
  /** Connected to us and not closed. */
  attached(peerId: string): boolean
  /** Not connected yet, but one we expect to connect to (named to us, not dropped, not given up on). */
  expected(peerId: string): boolean
}

/** Refusals of one piece to wait through for an expected holder: the mesh's connect and hello take well under this many seconds even under load. */
export const MAX_WAITS_FOR_HOLDER = 8

export function askSeedAlone (holders: readonly string[], view: HolderView, waits: number, maxWaits = MAX_WAITS_FOR_HOLDER): boolean {
  if (holders.length === 0) return false
  if (holders.some(h => view.attached(h))) return false
  if (holders.some(h => view.expected(h)) && waits < maxWaits) return false
  return true
}
