/**
 * The pieces one peer asked us for, in the order asked, at most one entry
 * per piece: however many requests a peer sends, the queue never holds more
 * than the manifest's pieces (a few numbers each). Duplicates are merged
 * rather than refused, so that an honest peer's re-request (after a reject
 * that crossed its own request on the wire) is never lost and never stalls
 * it: the piece is taken off the queue before it is served, so a request
 * that arrives while it is being served is queued again.
 */
export class ServeQueue {
  /** Piece → whether the asker reaches no other holder of it (`sole`). Map order is insertion order. */
  private readonly pending = new Map<number, boolean>()
  /** Whether a loop is draining this queue: exactly one may. */
  running = false

  get size (): number {
    return this.pending.size
  }

  /** Adds a request; a second request for a queued piece keeps its place and keeps `sole` if either said so. */
  push (piece: number, sole: boolean): void {
    this.pending.set(piece, sole || this.pending.get(piece) === true)
  }

  /** The peer no longer wants the piece (it got it elsewhere). */
  cancel (piece: number): void {
    this.pending.delete(piece)
  }

  /** Takes the oldest request off the queue, or undefined when there is none. */
  shift (): { piece: number, sole: boolean } | undefined {
    for (const [piece, sole] of this.pending) {
      this.pending.delete(piece)
      return { piece, sole }
    }
    return undefined
  }
}
