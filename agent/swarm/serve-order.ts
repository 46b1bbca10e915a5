/** A request waiting for this host's upload, as the serve order sees it. */
export interface ServeCandidate {
  /** How many of our peers hold the piece (PiecePicker's availability). */
  holders: number
  /** How many pieces the asker holds. */
  askerPieces: number
}

/**
 * Which waiting request gets this host's upload next: the piece fewest of our
 * peers hold, then the asker holding the fewest pieces; the earliest on a tie
 * (the order asked). Each peer's requests were served in the order they came,
 * and a host's upload went to its peers' queues first come, first served: a
 * piece the seed had just sent waited behind a dozen common ones at each host
 * it reached (up to 2 requests from each of 7 peers, 0.25 s each at bench:swarm's
 * 16 MiB/s), and a host that held nothing, and so could serve nothing, waited
 * as long as one that held almost everything. A rare piece served first spreads
 * while the others are still plentiful; a piece to an empty host gives the
 * swarm one more uploader (BitTorrent's and Kraken's seeders favour new peers
 * for the same reason).
 * Pure: the caller says who waits.
 */
export function nextToServe (waiting: readonly ServeCandidate[]): number | undefined {
  let best: number | undefined
  for (let i = 0; i < waiting.length; i++) {
    const c = waiting[i]
    if (best === undefined) {
      best = i
      continue
    }
    const b = waiting[best]
    if (c.holders < b.holders || (c.holders === b.holders && c.askerPieces < b.askerPieces)) best = i
  }
  return best
}

/**
 * One serve at a time takes the host's upload: each waits for its turn, and
 * when the holder is done (its tokens taken) the next turn goes to the
 * waiting serve nextToServe prefers, its candidate read at that moment (a
 * `have` may have arrived meanwhile).
 */
export class UploadTurns {
  private busy = false
  private readonly waiting: Array<{ candidate: () => ServeCandidate, go: () => void }> = []

  /** Resolves when it is this serve's turn; `done()` must follow. */
  async turn (candidate: () => ServeCandidate): Promise<void> {
    if (!this.busy) {
      this.busy = true
      return
    }
    await new Promise<void>(resolve => { this.waiting.push({ candidate, go: resolve }) })
  }

  /** The holder is done with the upload: the next turn goes out. */
  done (): void {
    const i = nextToServe(this.waiting.map(w => w.candidate()))
    if (i === undefined) {
      this.busy = false
      return
    }
    const [next] = this.waiting.splice(i, 1)
    next.go()
  }

  get queued (): number {
    return this.waiting.length
  }
}
