/**
 * The pieces one peer has asked us for, in the order asked. An honest peer
 * keeps at most MAX_OUTSTANDING requests in flight to us (session.ts) and
 * never asks twice for a piece still waiting here, so such a duplicate is dropped
 * and a peer that asks for more than a few times that many is not honest:
 * without the bound, a participant holding a distribution ticket could grow
 * our memory by sending requests faster than pieces go out.
 */
export interface ServeRequest { piece: number, sole: boolean }

export type Enqueued = 'first' | 'queued' | 'duplicate' | 'overflow'

export class ServeQueue {
  private readonly limit: number
  private entries: ServeRequest[] = []

  constructor (limit: number) {
    this.limit = limit
  }

  get length (): number {
    return this.entries.length
  }

  /** The request being served (the head), if any. */
  peek (): ServeRequest | undefined {
    return this.entries[0]
  }

  /**
   * 'first' means the queue was empty: the caller starts serving. The head is
   * not checked for duplicates: its answer (a reject, say) may already be with
   * the peer, which then asks again (as its sole source) before the head is done.
   */
  push (request: ServeRequest): Enqueued {
    if (this.entries.some((e, i) => i > 0 && e.piece === request.piece)) return 'duplicate'
    if (this.entries.length >= this.limit) return 'overflow'
    this.entries.push(request)
    return this.entries.length === 1 ? 'first' : 'queued'
  }

  /** Drops a waiting request the peer no longer wants; the head, being served, stays until done. */
  cancel (piece: number): void {
    this.entries = this.entries.filter((e, i) => i === 0 || e.piece !== piece)
  }

  /** Removes the head once served, unless it is no longer the head. */
  done (request: ServeRequest): void {
    if (this.entries[0] === request) this.entries.shift()
  }
}
