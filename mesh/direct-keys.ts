import { createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { ProtocolError } from './errors.ts'

/**
 * Keys of a direct data socket (docs/security.md, "Mesh: the direct data
 * socket"). Both ends are already mutually authenticated on the libp2p
 * connection that carries the data request; over it they exchange ephemeral
 * X25519 public keys, and the server picks a fresh session id. Each direction's
 * AES-256-GCM key is HKDF-SHA256 over the ECDH secret, salted with the session
 * id, with both peer ids and both public keys in the info: a key is bound to
 * these two enrolled peers, this request, and nothing else.
 */

export const SESSION_BYTES = 16
const INFO_LABEL = 'staccato direct data v1'

export interface DirectKeys {
  session: Buffer
  /** Seals what the server sends (the data, the trailer). */
  toReader: Buffer
  /** Seals what the reader sends (its hello). */
  toServer: Buffer
}

export interface Ephemeral {
  /** The raw 32-byte public key, base64url, as it goes in a message. */
  pub: string
  privateKey: KeyObject
}

export function ephemeral (): Ephemeral {
  const { publicKey, privateKey } = generateKeyPairSync('x25519')
  const jwk = publicKey.export({ format: 'jwk' })
  if (typeof jwk.x !== 'string') throw new ProtocolError('x25519: no public key to export')
  return { pub: jwk.x, privateKey }
}

export function newSession (): Buffer {
  return randomBytes(SESSION_BYTES)
}

export interface KeyContext {
  serverPeer: string
  readerPeer: string
  serverPub: string
  readerPub: string
  session: Buffer
}

/** Both ends call this with the same context; `own` is this end's ephemeral private key. */
export function deriveKeys (own: KeyObject, peerPub: string, ctx: KeyContext): DirectKeys {
  if (ctx.session.byteLength !== SESSION_BYTES) throw new ProtocolError('direct data: malformed session id')
  let secret: Buffer
  try {
    const peer = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: peerPub }, format: 'jwk' })
    secret = diffieHellman({ privateKey: own, publicKey: peer })
  } catch (err) {
    throw new ProtocolError('direct data: malformed X25519 public key', { cause: err })
  }
  // A low-order point gives the all-zero secret (RFC 7748 §6.1): refuse it rather than key with it.
  if (secret.every(b => b === 0)) throw new ProtocolError('direct data: X25519 public key of low order')
  const info = Buffer.from([INFO_LABEL, ctx.serverPeer, ctx.readerPeer, ctx.serverPub, ctx.readerPub].join('\0'))
  const okm = Buffer.from(hkdfSync('sha256', secret, ctx.session, info, 64))
  return { session: ctx.session, toReader: okm.subarray(0, 32), toServer: okm.subarray(32, 64) }
}
