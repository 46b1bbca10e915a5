import type { Bitfield } from './bitfield.ts'

/** Missing pieces at which a second request for a piece in flight is allowed (BitTorrent uses a handful too). */
export const ENDGAME_PIECES = 4

/**
 * Chooses the next piece to ask a peer for: rarest first among the pieces we
 * miss and the peer has, so that scarce pieces spread before common ones
 * (BitTorrent, Kraken). Once every missing piece is already asked for
 * somewhere, endgame allows a second request for a piece from another peer,
 * so one slow peer cannot hold back the last pieces.
 */
export class PiecePicker {
  private readonly availability: Uint16Array
  /** Peers each missing piece is requested from. */
  private readonly requested = new Map<number, Set<string>>()
  /** The keys of `requested`, one bit each as in Bitfield, for pick's scan. */
  private readonly requestedBits: Uint8Array
  /** The bits of the last byte that are pieces. */
  private readonly lastMask: number
  private readonly mine: Bitfield
  /** Uniform in [0, 1): injected so that a simulation replays the same choices from a seed. */
  private readonly random: () => number

  constructor (mine: Bitfield, random: () => number = Math.random) {
    this.mine = mine
    this.random = random
    this.availability = new Uint16Array(mine.size)
    this.requestedBits = new Uint8Array(mine.bytes.length)
    const rest = mine.size % 8
    this.lastMask = rest === 0 ? 0xff : (0xff << (8 - rest)) & 0xff
  }

  private forget (piece: number): void {
    this.requested.delete(piece)
    this.requestedBits[piece >> 3] &= ~(0x80 >> (piece & 7))
  }

  addPeer (have: Bitfield): void {
    for (let i = 0; i < have.size; i++) if (have.has(i)) this.availability[i]++
  }

  removePeer (have: Bitfield, peer: string): number[] {
    for (let i = 0; i < have.size; i++) if (have.has(i) && this.availability[i] > 0) this.availability[i]--
    const released: number[] = []
    for (const [piece, peers] of this.requested) {
      if (peers.delete(peer)) released.push(piece)
      if (peers.size === 0) this.forget(piece)
    }
    return released
  }

  /** How many of our peers hold `piece` (what serving it first is decided by: serve-order.ts). */
  holders (piece: number): number {
    return this.availability[piece] ?? 0
  }

  onHave (piece: number): void {
    if (piece < this.availability.length) this.availability[piece]++
  }

  /** Picks a piece for `peer`, or undefined when it has nothing we need. `refused` are pieces it declined to send. */
  pick (peer: string, theirs: Bitfield, refused: ReadonlySet<number>): number | undefined {
    let best: number | undefined
    let bestRarity = Infinity
    let ties = 0
    let allRequested = true
    const mine = this.mine.bytes
    const have = theirs.bytes
    const asked = this.requestedBits
    // Eight pieces at a time: a peer with nothing new costs a pass over bytes, not over pieces (bench:swarm-sim calls this millions of times).
    for (let b = 0; b < mine.length; b++) {
      const missing = ~mine[b] & (b === mine.length - 1 ? this.lastMask : 0xff)
      if (missing === 0) continue
      const unasked = missing & ~asked[b]
      if (unasked !== 0) allRequested = false
      let candidates = unasked & have[b]
      while (candidates !== 0) {
        // Highest bit first: bit 0x80 is the byte's first piece, as in Bitfield.
        const bit = 31 - Math.clz32(candidates)
        candidates &= ~(1 << bit)
        const i = b * 8 + 7 - bit
        if (refused.has(i)) continue
        const rarity = this.availability[i]
        if (rarity < bestRarity) {
          best = i
          bestRarity = rarity
          ties = 1
        } else if (rarity === bestRarity && this.random() * ++ties < 1) {
          // Reservoir sampling among equally rare pieces, so peers do not all chase the same one.
          best = i
        }
      }
    }
    // Endgame only for the last few pieces: earlier, every piece is already asked for simply because many are in flight.
    if (best === undefined && allRequested && this.mine.size - this.mine.count() <= ENDGAME_PIECES) best = this.endgame(peer, theirs, refused)
    if (best !== undefined) this.markRequested(best, peer)
    return best
  }

  private endgame (peer: string, theirs: Bitfield, refused: ReadonlySet<number>): number | undefined {
    for (const [piece, peers] of this.requested) {
      if (!this.mine.has(piece) && theirs.has(piece) && !peers.has(peer) && peers.size < 2 && !refused.has(piece)) return piece
    }
    return undefined
  }

  private markRequested (piece: number, peer: string): void {
    const peers = this.requested.get(piece) ?? new Set()
    peers.add(peer)
    this.requested.set(piece, peers)
    this.requestedBits[piece >> 3] |= 0x80 >> (piece & 7)
  }

  /** The request to `peer` is over (piece received, refused, failed); returns the other peers still asked for it. */
  release (piece: number, peer: string): string[] {
    const peers = this.requested.get(piece)
    if (peers === undefined) return []
    peers.delete(peer)
    if (peers.size === 0) this.forget(piece)
    return [...peers]
  }

  /** We have the piece now: forget every request for it. */
  received (piece: number): string[] {
    const peers = [...(this.requested.get(piece) ?? [])]
    this.forget(piece)
    return peers
  }
}
