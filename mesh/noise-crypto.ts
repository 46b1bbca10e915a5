import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { Uint8ArrayList } from 'uint8arraylist'

const TAG_BYTES = 16
// The default implementation's own threshold: below it the wasm cipher beats node:crypto's set-up.
const SMALL_PAYLOAD = 1200

/**
 * Noise's transport cipher on node:crypto, cheaper per frame than the default:
 * noise seals every 64 KiB frame with a fresh cipher, and the default turns the
 * raw key into a key object each time (a tenth of a receiving agent's CPU in
 * bench:transfer profiles) and copies ciphertext and tag into one buffer.
 * Here the key object is made once per key and the tag travels as its own
 * buffer. Same wire format: peers with the default implementation interoperate.
 */
export const nodeNoiseCrypto: ICryptoInterface = {
  ...defaultCrypto,

  chaCha20Poly1305Encrypt (plaintext, nonce, ad, k) {
    if (plaintext.byteLength < SMALL_PAYLOAD) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    const cipher = createCipheriv('chacha20-poly1305', keyObject(k), nonce, { authTagLength: TAG_BYTES })
    if (ad.byteLength > 0) cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    const out = new Uint8ArrayList()
    if (plaintext instanceof Uint8Array) {
      out.append(cipher.update(plaintext))
    } else {
      for (const part of plaintext) out.append(cipher.update(part))
    }
    // chacha20-poly1305 is a stream cipher: final() yields no bytes, only the tag.
    cipher.final()
    out.append(cipher.getAuthTag())
    return asNoiseList(out)
  },

  chaCha20Poly1305Decrypt (ciphertext, nonce, ad, k, dst) {
    if (ciphertext.byteLength < SMALL_PAYLOAD) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
    const textLength = ciphertext.byteLength - TAG_BYTES
    const decipher = createDecipheriv('chacha20-poly1305', keyObject(k), nonce, { authTagLength: TAG_BYTES })
    if (ad.byteLength > 0) decipher.setAAD(ad, { plaintextLength: textLength })
    decipher.setAuthTag(ciphertext.subarray(textLength))
    // Noise hands over the frame's body in one piece as `dst` (copying it when the frame spanned
    // two reads): deciphering that gives one plaintext buffer instead of a list of pieces. Were
    // `dst` ever anything else, the tag would not authenticate it and final() would throw.
    const text = dst?.byteLength === textLength ? dst : ciphertext.subarray(0, textLength)
    const out = decipher.update(text)
    // Throws when the tag does not authenticate the bytes; nothing decrypted is used before this.
    decipher.final()
    return out
  }
}

type NoiseList = Exclude<ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>, Uint8Array>

/**
 * Noise is built on uint8arraylist 2, this project on 3. Both mark their lists
 * with the same Symbol.for key and accept each other's at run time; only their
 * declared types differ.
 */
function asNoiseList (list: Uint8ArrayList): NoiseList {
  return list as unknown as NoiseList
}

const keys = new WeakMap<Uint8Array, { bytes: Buffer, key: KeyObject }>()

/** One key object per noise key: a cipher state keeps the same key array for its whole life. */
function keyObject (k: Uint8Array): KeyObject {
  const cached = keys.get(k)
  // The array is checked against a copy, so a key changed in place can never reuse a stale key object.
  if (cached !== undefined && cached.bytes.equals(k)) return cached.key
  const bytes = Buffer.from(k)
  const key = createSecretKey(bytes)
  keys.set(k, { bytes, key })
  return key
}
