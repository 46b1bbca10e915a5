/** What the seed knows about one piece when a peer asks for it. */
export interface SeedView {
  /** The peer the seed last sent the piece to, if any. */
  sentTo?: string
  /** Connected peers other than the asker that announced the piece. */
  holders: string[]
  /** Whether `sentTo` is still connected and is not the asker. */
  recipientElsewhere: boolean
  /** The asker says it reaches none of the holders. */
  sole: boolean
}

export interface Refusal {
  reason: string
  holders?: string[]
}

/**
 * Super-seeding: the seed's upload is the scarce resource, so it sends a
 * piece a second time only when nobody can get it elsewhere: the peer it
 * went to is gone without having announced it, or the asker says it reaches
 * none of the holders (`sole`: it dropped them, or sits behind a firewall).
 * No timers: under load a slow peer delays, it does not duplicate.
 * Returns undefined when the seed sends the piece.
 */
export function seedRefusal (view: SeedView): Refusal | undefined {
  if (view.sentTo === undefined) return undefined
  if (view.holders.length > 0) return view.sole ? undefined : { reason: 'peers have this piece; fetch it there', holders: view.holders }
  if (view.recipientElsewhere) return { reason: 'this piece is on its way to a peer; fetch it there', holders: [view.sentTo] }
  return undefined
}

/**
 * A destination's answer to the seed's refusal that names holders: when it
 * reaches one, it fetches there; when it reaches none, it asks the seed again
 * as its sole source only once it has nothing else in flight (it is starved)
 * and a whole tick has gone by since it first heard so. With a bounded peer
 * set most holders are out of reach at first, and the piece reaches one of its
 * peers a few hops later; asking at once made the seed send pieces two or
 * three times (bench:swarm-sim, N = 100). A holder it dropped (a corrupt peer)
 * still gets the piece resent, once the rest is in.
 * `firstTick` is the tick at which it first heard it, `tick` the current one.
 */
export function asksAsSole (holders: number, reachable: boolean, inFlight: number, firstTick: number | undefined, tick: number): boolean {
  return holders > 0 && !reachable && inFlight === 0 && firstTick !== undefined && tick - firstTick >= 2
}
