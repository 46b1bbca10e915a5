import { describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { nodeNoiseCrypto } from '../../mesh/noise-crypto.ts'

const key = randomBytes(32)
const nonce = randomBytes(12)
const ad = new Uint8Array(0)
const flat = (b: Uint8Array | { subarray: () => Uint8Array }): Buffer => Buffer.from(b instanceof Uint8Array ? b : b.subarray())
type NoiseInput = Parameters<typeof nodeNoiseCrypto.chaCha20Poly1305Decrypt>[0]
/** A list split across pieces, typed as noise's own uint8arraylist (2.x; the same at run time). */
const pieces = (...parts: Uint8Array[]): NoiseInput => new Uint8ArrayList(...parts) as unknown as NoiseInput

describe('noise transport cipher on node:crypto', () => {
  it('seals and opens frames exactly as the default implementation does, both ways', () => {
    for (const size of [0, 100, 1199, 1200, 65519]) {
      const plain = randomBytes(size)
      const ours = flat(nodeNoiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key))
      const theirs = flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key))
      expect(ours.equals(theirs), `size ${size}`).toBe(true)
      expect(flat(nodeNoiseCrypto.chaCha20Poly1305Decrypt(theirs, nonce, ad, key)).equals(plain)).toBe(true)
      // Noise passes the frame body as dst; a frame split across reads arrives as a list.
      const list = pieces(theirs.subarray(0, 7), theirs.subarray(7))
      expect(flat(nodeNoiseCrypto.chaCha20Poly1305Decrypt(list, nonce, ad, key, list.subarray(0, size))).equals(plain)).toBe(true)
    }
  })

  it('encrypts a list of pieces like the same bytes in one buffer', () => {
    const plain = randomBytes(70_000)
    const list = pieces(plain.subarray(0, 5000), plain.subarray(5000))
    expect(flat(nodeNoiseCrypto.chaCha20Poly1305Encrypt(list, nonce, ad, key)).equals(flat(nodeNoiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key)))).toBe(true)
  })

  it('refuses a frame whose bytes or tag were changed, and a wrong key', () => {
    const sealed = flat(nodeNoiseCrypto.chaCha20Poly1305Encrypt(randomBytes(4096), nonce, ad, key))
    const bitFlip = Buffer.from(sealed)
    bitFlip[10] ^= 1
    expect(() => nodeNoiseCrypto.chaCha20Poly1305Decrypt(bitFlip, nonce, ad, key)).toThrow()
    const badTag = Buffer.from(sealed)
    badTag[badTag.length - 1] ^= 1
    expect(() => nodeNoiseCrypto.chaCha20Poly1305Decrypt(badTag, nonce, ad, key)).toThrow()
    expect(() => nodeNoiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, randomBytes(32))).toThrow()
    // A dst that is not the frame body fails authentication rather than yielding wrong bytes.
    expect(() => nodeNoiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, key, Buffer.alloc(4096))).toThrow()
  })

  it('authenticates the associated data of handshake messages', () => {
    const hash = randomBytes(32)
    const sealed = flat(nodeNoiseCrypto.chaCha20Poly1305Encrypt(randomBytes(2000), nonce, hash, key))
    expect(flat(defaultCrypto.chaCha20Poly1305Decrypt(sealed, nonce, hash, key)).byteLength).toBe(2000)
    expect(() => nodeNoiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, randomBytes(32), key)).toThrow()
  })
})
