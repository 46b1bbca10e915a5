import type { DistributionManifest } from './model.ts'

/**
 * Bytes of each blob of an image distribution that a participant holds,
 * from the bitfield of pieces it last reported (base64, piece 0 in the high
 * bit of the first byte, as the agents send it): a piece counts toward every
 * blob it covers, by the bytes it covers. Pure.
 */
export function blobProgress (manifest: Pick<DistributionManifest, 'size' | 'pieceSize' | 'pieces' | 'image'>, have: string | undefined): number[] {
  const blobs = manifest.image?.blobs ?? []
  const done = blobs.map(() => 0)
  if (have === undefined) return done
  const bits = Buffer.from(have, 'base64')
  for (let piece = 0; piece < manifest.pieces.length; piece++) {
    if (((bits[piece >> 3] ?? 0) & (0x80 >> (piece & 7))) === 0) continue
    const start = piece * manifest.pieceSize
    const end = Math.min(start + manifest.pieceSize, manifest.size)
    let at = 0
    for (const [i, b] of blobs.entries()) {
      const overlap = Math.min(end, at + b.size) - Math.max(start, at)
      if (overlap > 0) done[i] += overlap
      at += b.size
    }
  }
  return done
}
