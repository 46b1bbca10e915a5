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

