import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { digestOf, newHasher } from '../../../agent/copy/checksum.ts'

describe('digestOf: a whole buffer hashed in one call', () => {
  it('gives what the streaming hasher gives, for sha256 and blake3, at every size a small file has (and a view into a larger buffer)', () => {
    const big = randomBytes(300_000)
    const cases = [new Uint8Array(0), big.subarray(0, 1), big.subarray(7, 4096 + 7), big.subarray(1000, 263_144)]
    for (const algorithm of ['sha256', 'blake3'] as const) {
      for (const data of cases) {
        const h = newHasher(algorithm)
        // In two chunks, as bytes come off the wire.
        h?.update(data.subarray(0, data.byteLength >> 1))
        h?.update(data.subarray(data.byteLength >> 1))
        expect({ algorithm, size: data.byteLength, digest: digestOf(algorithm, data) }).toEqual({ algorithm, size: data.byteLength, digest: h?.digest() })
      }
    }
  })
})
