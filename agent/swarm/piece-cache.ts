/**
 * Verified pieces kept in memory to serve, newest first out of the way last.
 * Rarest first sends every peer after the pieces that just arrived, so a
 * small cache answers most requests without a file read or a fresh buffer
 * (on a busy host the allocation of every served piece used to cost a full
 * GC every few hundred milliseconds).
 */
export class PieceCache {
  private readonly budget: number
  private bytes = 0
  // A Map iterates in insertion order: re-inserting on use makes the first entry the least recently used.
  private readonly pieces = new Map<number, { parts: Uint8Array[], length: number }>()

  constructor (budgetBytes: number) {
    this.budget = budgetBytes
  }

  get (piece: number): Uint8Array[] | undefined {
    const entry = this.pieces.get(piece)
    if (entry === undefined) return undefined
    this.pieces.delete(piece)
    this.pieces.set(piece, entry)
    return entry.parts
  }

  /** Keeps `parts` (which the caller must not change afterwards), dropping the least recently used beyond the budget. */
  put (piece: number, parts: Uint8Array[]): void {
    if (this.pieces.has(piece)) return
    const length = parts.reduce((n, p) => n + p.byteLength, 0)
    if (length > this.budget) return
    this.pieces.set(piece, { parts, length })
    this.bytes += length
    for (const [old, entry] of this.pieces) {
      if (this.bytes <= this.budget) break
      this.pieces.delete(old)
      this.bytes -= entry.length
    }
  }

  clear (): void {
    this.pieces.clear()
    this.bytes = 0
  }
}
