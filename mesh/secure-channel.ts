import { randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import type { ICryptoInterface, NoiseComponents, NoiseExtensions } from '@chainsafe/libp2p-noise'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { InvalidCryptoExchangeError, serviceCapabilities } from '@libp2p/interface'
import type { ConnectionEncrypter, Logger, MessageStream, PrivateKey, PublicKey, SecureConnectionOptions, SecuredConnection, StreamMuxerFactory } from '@libp2p/interface'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'
import { nodeNoiseCrypto } from './noise-crypto.ts'
import { RecordStream } from './record-stream.ts'
import type { RecordStreamOptions } from './record-stream.ts'

export const SECURE_CHANNEL_PROTOCOL = '/staccato/noise-aesgcm/1'
// Mixed into the handshake hash: a handshake that one end runs as stock /noise
// and the other as this channel fails, so a stripped or rewritten protocol id
// in the (unauthenticated) multistream-select cannot go unnoticed.
const PROLOGUE = new TextEncoder().encode(SECURE_CHANNEL_PROTOCOL)
// Noise messages are at most 65535 bytes, each behind a 2-byte length.
const NOISE_MSG_MAX_BYTES = 65535

export type SecureChannelComponents = NoiseComponents

export type SecureChannelInit = RecordStreamOptions

interface Handshake {
  payload: { identityKey: Uint8Array, extensions?: NoiseExtensions & { streamMuxers?: string[] } }
}

/** What a Noise instance has at run time but its declared type keeps private. */
interface NoiseInternals {
  performHandshakeInitiator: (connection: unknown, privateKey: PrivateKey, log: Logger, remoteIdentityKey?: PublicKey, options?: SecureConnectionOptions) => Promise<Handshake>
  performHandshakeResponder: (connection: unknown, privateKey: PrivateKey, log: Logger, remoteIdentityKey?: PublicKey, options?: SecureConnectionOptions) => Promise<Handshake>
  getStreamMuxer: (protocols?: string[]) => StreamMuxerFactory | undefined
}

const uint16BEEncode = Object.assign((value: number): Uint8Array => Uint8Array.of(value >> 8, value & 0xff), { bytes: 2 })
const uint16BEDecode = Object.assign((data: Uint8ArrayList): number => {
  if (data.byteLength < 2) throw new RangeError('Could not decode int16BE')
  return data.getUint16(0)
}, { bytes: 2 })

/**
 * A connection encrypter for agents and coordinators among themselves: the
 * Noise XX handshake exactly as @chainsafe/libp2p-noise performs it (its own
 * code, identity payload and signature checks), then the transport phase
 * replaced by big AES-256-GCM records (record-stream.ts) keyed with the two
 * halves of the handshake's split(). Listed before stock /noise, which stays
 * for any other peer.
 */
class SecureChannel implements ConnectionEncrypter<NoiseExtensions> {
  readonly protocol = SECURE_CHANNEL_PROTOCOL
  readonly [Symbol.toStringTag] = '@staccato/noise-aesgcm'
  readonly [serviceCapabilities]: string[] = ['@libp2p/connection-encryption']
  private readonly components: SecureChannelComponents
  private readonly init: SecureChannelInit
  // Like noise's own static key: one per node, signed by the identity key in every handshake.
  private readonly staticNoiseKey = randomBytes(32)

  constructor (components: SecureChannelComponents, init: SecureChannelInit) {
    this.components = components
    this.init = init
  }

  async secureOutbound (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection<NoiseExtensions>> {
    return await this.secure(connection, true, options)
  }

  async secureInbound (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection<NoiseExtensions>> {
    return await this.secure(connection, false, options)
  }

  private async secure (connection: MessageStream, initiator: boolean, options?: SecureConnectionOptions): Promise<SecuredConnection<NoiseExtensions>> {
    // Each handshake gets its own Noise instance, so the crypto hook below sees that handshake's calls only.
    const split: Uint8Array[][] = []
    const crypto: ICryptoInterface = {
      ...nodeNoiseCrypto,
      getHKDF (ck, ikm) {
        const out = nodeNoiseCrypto.getHKDF(ck, ikm)
        // Split() is HKDF(ck, zero-length input); every MixKey of XX feeds a 32-byte DH output.
        if (ikm.byteLength === 0) split.push([out[0], out[1]])
        return out
      }
    }
    // Without metrics: noise would register its counters again for every instance.
    const { peerId, privateKey, logger, upgrader } = this.components
    const noiseInstance = noise({ crypto, staticNoiseKey: this.staticNoiseKey, prologueBytes: PROLOGUE })({ peerId, privateKey, logger, upgrader }) as unknown as NoiseInternals
    const log = connection.log.newScope('noise-aesgcm')
    const wrapped = lpStream(connection, { lengthEncoder: uint16BEEncode, lengthDecoder: uint16BEDecode, maxDataLength: NOISE_MSG_MAX_BYTES })
    const perform = initiator ? noiseInstance.performHandshakeInitiator : noiseInstance.performHandshakeResponder
    // These are @chainsafe/libp2p-noise's own (private) handshake methods: an upgrade that renames them must fail
    // loudly here, and test/mesh/secure-channel.test.ts, rather than fall back to something else.
    if (typeof perform !== 'function') throw new InvalidCryptoExchangeError('noise-aesgcm: this @chainsafe/libp2p-noise has no handshake methods to reuse')
    const handshake = await perform.call(noiseInstance, wrapped, this.components.privateKey, log, options?.remotePeer?.publicKey, options)
    if (split.length !== 1) throw new InvalidCryptoExchangeError(`noise-aesgcm: expected one split() in the handshake, saw ${split.length}`)
    // Noise: the initiator sends with the first key and receives with the second; the responder the reverse.
    const [k1, k2] = split[0]
    const keys = initiator ? { send: k1, receive: k2 } : { send: k2, receive: k1 }
    const remotePeer = peerIdFromPublicKey(publicKeyFromProtobuf(handshake.payload.identityKey))
    return {
      connection: new RecordStream(wrapped.unwrap(), keys, this.init),
      remoteExtensions: handshake.payload.extensions,
      remotePeer,
      streamMuxer: options?.skipStreamMuxerNegotiation === true ? undefined : noiseInstance.getStreamMuxer(handshake.payload.extensions?.streamMuxers)
    }
  }
}

export function secureChannel (init: SecureChannelInit = {}): (components: SecureChannelComponents) => ConnectionEncrypter<NoiseExtensions> {
  return components => new SecureChannel(components, init)
}
