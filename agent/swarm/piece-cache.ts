/**
 * Verified pieces kept in memory to serve, least recently used out first, one
 * cache for all of an agent's distributions so that its memory does not grow
 * with how many run at once. Rarest first sends every peer after the pieces
 * that just arrived, so a small cache answers most requests without a file
 * read or a fresh buffer (on a busy host the allocation of every served piece
 * used to cost a full GC every few hundred milliseconds).
 */
export class PieceCache {
  private readonly budget: number
  private bytes = 0
  // A Map iterates in insertion order: re-inserting on use makes the first entry the least recently used.
  private readonly pieces = new Map<string, { distributionId: string, parts: Uint8Array[], length: number }>()

  constructor (budgetBytes: number) {
    this.budget = budgetBytes
  }

  get (distributionId: string, piece: number): Uint8Array[] | undefined {
    const key = `${distributionId}/${piece}`
    const entry = this.pieces.get(key)
    if (entry === undefined) return undefined
    this.pieces.delete(key)
    this.pieces.set(key, entry)
    return entry.parts
  }

  /** Keeps `parts` (which the caller must not change afterwards), dropping the least recently used beyond the budget. */
  put (distributionId: string, piece: number, parts: Uint8Array[]): void {
    const key = `${distributionId}/${piece}`
    if (this.pieces.has(key)) return
    const length = parts.reduce((n, p) => n + p.byteLength, 0)
    if (length > this.budget) return
    this.pieces.set(key, { distributionId, parts, length })
    this.bytes += length
    for (const [old, entry] of this.pieces) {
      if (this.bytes <= this.budget) break
      this.pieces.delete(old)
      this.bytes -= entry.length
    }
  }

  /** Drops every piece of a distribution this agent has left. */
  forget (distributionId: string): void {
    for (const [key, entry] of this.pieces) {
      if (entry.distributionId !== distributionId) continue
      this.pieces.delete(key)
      this.bytes -= entry.length
    }
  }

  /** Bytes held. */
  get size (): number {
    return this.bytes
  }
}
