import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { newHasher } from '../../../agent/copy/checksum.ts'
import { OrderedHash } from '../../../agent/copy/ordered-hash.ts'

/**
 * The ordered hash of a multi-stream copy over an in-memory "file": what is
 * read back is recorded, and the reader returns its bytes in two buffers
 * taken in turn, as the file plug-in's readBack does.
 */

const SIZE = 1_000_000
const BOUNDS = [0, 250_000, 500_000, 750_000, SIZE]
const CHUNK = 10_000

interface Harness { hash: OrderedHash, file: Buffer, inFile: number, reads: Array<[number, number]> }

/** A reader with two reused buffers, returning at most `max` bytes a call. */
function harness (max: number): Harness {
  const file = Buffer.alloc(SIZE)
  const buffers = [Buffer.alloc(max), Buffer.alloc(max)]
  let turn = 0
  const h: Harness = {
    file,
    inFile: 0,
    reads: [],
    hash: new OrderedHash(newHasher('sha256')!, async (offset, length) => {
      const n = Math.min(length, max)
      // A read-back past what the file holds would hash bytes not yet written.
      expect(offset + n).toBeLessThanOrEqual(h.inFile)
      h.reads.push([offset, length])
      await new Promise(resolve => setImmediate(resolve))
      const b = buffers[turn++ % 2]
      file.copy(b, 0, offset, offset + n)
      return b.subarray(0, n)
    }, true)
  }
  return h
}

describe('OrderedHash: the whole object\'s digest from ranges written out of order', () => {
  it('hashes chunks at the front as they go by and reads back only the rest, after it is in the file', async () => {
    const bytes = randomBytes(SIZE)
    const h = harness(64 * 1024)
    const written = [0, 0, 0, 0]
    // The four ranges take turns, chunk by chunk, as four streams do.
    for (let round = 0; written.some((w, i) => BOUNDS[i] + w < BOUNDS[i + 1]); round++) {
      for (let i = 0; i < 4; i++) {
        const at = BOUNDS[i] + written[i]
        if (at >= BOUNDS[i + 1]) continue
        const chunk = bytes.subarray(at, Math.min(at + CHUNK, BOUNDS[i + 1]))
        h.hash.offer(at, chunk)
        chunk.copy(h.file, at)
        written[i] += chunk.byteLength
      }
      // What the file holds without a gap, as the range sink reports it.
      h.inFile = written[0] < BOUNDS[1] ? written[0] : BOUNDS[1] + written[1]
      h.hash.advance(h.inFile)
      await new Promise(resolve => setImmediate(resolve))
    }
    h.inFile = SIZE
    expect(await h.hash.digest(SIZE)).toBe(createHash('sha256').update(bytes).digest('hex'))
    // Range 0 went by at the front: none of it was read back.
    expect(h.reads.length).toBeGreaterThan(0)
    expect(h.reads.every(([offset]) => offset >= BOUNDS[1])).toBe(true)
  })

  it('keeps the bytes of a read until the read after next, with short reads, and refuses nothing it was not offered at the front', async () => {
    const bytes = randomBytes(SIZE)
    const h = harness(4096 + 17)
    bytes.copy(h.file)
    // Offered out of place (not at the front): not hashed, read back instead.
    h.hash.offer(BOUNDS[2], bytes.subarray(BOUNDS[2], BOUNDS[2] + CHUNK))
    h.inFile = SIZE
    h.hash.advance(SIZE / 2)
    expect(await h.hash.digest(SIZE)).toBe(createHash('sha256').update(bytes).digest('hex'))
    // The first read asks for the whole target (under the 4 MiB a read asks for at most).
    expect(h.reads[0]).toEqual([0, SIZE / 2])
  })
})
