import { describe, expect, it } from 'vitest'
import { blobProgress } from '../../coordinator/image-progress.ts'

const d = (c: string): string => `sha256:${c.repeat(64)}`

/** Three blobs of 100, 250 and 50 bytes laid end to end, cut in pieces of 128: [0,128) [128,256) [256,384) [384,400). */
const manifest = {
  size: 400,
  pieceSize: 128,
  pieces: ['a', 'b', 'c', 'd'],
  image: { digest: d('f'), mediaType: 'x', manifest: '', blobs: [{ digest: d('1'), size: 100 }, { digest: d('2'), size: 250 }, { digest: d('3'), size: 50 }] }
}

/** The agents' bitfield encoding: piece 0 in the high bit of the first byte. */
function have (...pieces: number[]): string {
  const bytes = Buffer.alloc(1)
  for (const p of pieces) bytes[0] |= 0x80 >> p
  return bytes.toString('base64')
}

describe('per-blob progress of an image distribution (transfer show prints it: test/e2e/oci-swarm.test.ts)', () => {
  it('counts each held piece toward the blobs it covers, by the bytes it covers', () => {
    expect(blobProgress(manifest, undefined)).toEqual([0, 0, 0])
    // Piece 0 holds all of blob 1 and 28 bytes of blob 2.
    expect(blobProgress(manifest, have(0))).toEqual([100, 28, 0])
    // Blob 2 is [100, 350): piece 2 ends it (94 bytes) and starts blob 3 (34 of its 50); piece 3 is the last 16.
    expect(blobProgress(manifest, have(2, 3))).toEqual([0, 94, 50])
    expect(blobProgress(manifest, have(0, 1, 2, 3))).toEqual([100, 250, 50])
  })
})
