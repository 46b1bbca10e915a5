import { describe, it, expect, afterEach } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Libp2p, Stream } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { multiaddr } from '@multiformats/multiaddr'
import { createMeshNode, meshMuxer, NetworkError, ProtocolError, SECURE_CHANNEL_PROTOCOL, send } from '../../mesh/index.ts'
import type { SecureChannelInit } from '../../mesh/index.ts'
import { RecordProxy } from '../helpers/record-proxy.ts'
import type { RecordPolicy } from '../helpers/record-proxy.ts'
import { tcpPort } from '../helpers/tcp-proxy.ts'

const PROTOCOL = '/staccato/test-channel/1'
const MiB = 1024 * 1024

const started: Array<{ stop: () => void | Promise<void> }> = []
afterEach(async () => {
  for (const s of started.splice(0).reverse()) await s.stop()
})

async function meshNode (listen: boolean, channel?: SecureChannelInit): Promise<Libp2p> {
  const node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [], secureChannel: channel })
  started.push(node)
  return node
}

/** A bounded poll: tests wait on conditions, never on elapsed time alone. */
async function until (what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  for (let waited = 0; !condition(); waited += 20) {
    if (waited > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

interface Received { bytes: Buffer, failed: boolean, done: boolean }

/** Every byte the listener's handler reads on PROTOCOL, and how its stream ended. */
async function collect (node: Libp2p): Promise<Received> {
  const received: Received = { bytes: Buffer.alloc(0), failed: false, done: false }
  await node.handle(PROTOCOL, async (stream: Stream) => {
    const parts: Buffer[] = []
    try {
      for await (const chunk of stream) parts.push(Buffer.from(chunk.subarray()))
    } catch (err) {
      if (process.env.DEBUG_CHANNEL !== undefined) console.error('collect', err)
      received.failed = true
    }
    received.bytes = Buffer.concat(parts)
    received.done = true
  })
  return received
}

/** Writes `data` in 1 MiB pieces; an error (the connection closed under it) ends the writing. */
async function sendAll (stream: Stream, data: Buffer): Promise<void> {
  try {
    for (let at = 0; at < data.byteLength; at += MiB) await send(stream, data.subarray(at, at + MiB))
    await stream.close()
  } catch (err) {
    if (process.env.DEBUG_CHANNEL !== undefined) console.error('sendAll', err)
    // The attacks close the connection under the writer; what arrived is checked at the listener.
  }
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('the AES-GCM secure channel between mesh nodes', () => {
  it('is negotiated between mesh nodes, authenticates the peer and moves 64 MiB intact across rekeys', async () => {
    // Both ends must agree on the rekey interval; 3 MiB makes 64 MiB cross about twenty.
    const channel = { rekeyBytes: 3 * MiB }
    const listener = await meshNode(true, channel)
    const dialer = await meshNode(false, channel)
    const received = await collect(listener)
    const data = randomBytes(64 * MiB)
    const connection = await dialer.dial(listener.getMultiaddrs()[0])
    expect(connection.encryption).toBe(SECURE_CHANNEL_PROTOCOL)
    expect(connection.remotePeer.equals(listener.peerId)).toBe(true)
    await sendAll(await connection.newStream(PROTOCOL), data)
    await until('the listener to read everything', () => received.done)
    expect(received.failed).toBe(false)
    expect(received.bytes.byteLength).toBe(data.byteLength)
    expect(sha256(received.bytes)).toBe(sha256(data))
    const inbound = listener.getConnections(dialer.peerId)[0]
    expect(inbound.encryption).toBe(SECURE_CHANNEL_PROTOCOL)
    expect(inbound.remotePeer.equals(dialer.peerId)).toBe(true)
  })

  it('refuses a listener that is not the expected peer', async () => {
    const listener = await meshNode(true)
    const dialer = await meshNode(false)
    const someoneElse = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const addr = listener.getMultiaddrs()[0].toString().replace(/\/p2p\/.*$/, '')
    await expect(dialer.dial(multiaddr(`${addr}/p2p/${someoneElse.toString()}`))).rejects.toThrow()
    expect(dialer.getConnections()).toHaveLength(0)
  })

  it('falls back to stock noise with a libp2p peer that has only noise, both ways', async () => {
    const ours = await meshNode(true)
    const stock = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      // The mesh's yamux windows: a stock-yamux peer is refused a mesh node's
      // first 4 MiB window (ReceiveWindowExceededError), which is not what this tests.
      streamMuxers: [meshMuxer()]
    })
    started.push(stock)
    const toStock = await collect(stock)
    const toOurs = await collect(ours)
    const data = randomBytes(3 * MiB)

    const out = await ours.dial(stock.getMultiaddrs()[0])
    expect(out.encryption).toBe('/noise')
    await sendAll(await out.newStream(PROTOCOL), data)
    await until('the stock node to read everything', () => toStock.done)
    expect(sha256(toStock.bytes)).toBe(sha256(data))
    await out.close()
    await until('the first connection to be gone at both ends', () => stock.getConnections().length === 0 && ours.getConnections().length === 0)

    const back = await stock.dial(ours.getMultiaddrs()[0])
    expect(back.encryption).toBe('/noise')
    await sendAll(await back.newStream(PROTOCOL), data)
    await until('our node to read everything', () => toOurs.done)
    expect(sha256(toOurs.bytes)).toBe(sha256(data))
  })
})

describe('an attacker on the wire between two mesh nodes', () => {
  const BIG = 256 * 1024
  /** Acts on the third record that carries data (from the test stream, not identify's or yamux's small ones). */
  function onThirdBigRecord (act: (record: Buffer) => Buffer[] | { forward: Buffer[], end: boolean }): RecordPolicy {
    let big = 0
    return (_index, record) => {
      if (record.byteLength < BIG || ++big !== 3) return { forward: [record] }
      const result = act(record)
      return Array.isArray(result) ? { forward: result } : result
    }
  }

  async function attack (policy: RecordPolicy): Promise<{ received: Received, data: Buffer, errors: Error[], listener: Libp2p }> {
    const errors: Error[] = []
    const listener = await meshNode(true, { onError: err => errors.push(err) })
    const dialer = await meshNode(false)
    const received = await collect(listener)
    const proxy = await RecordProxy.start(tcpPort(listener.getMultiaddrs()[0].toString()), policy)
    started.push({ stop: async () => { await proxy.close() } })
    const data = randomBytes(16 * MiB)
    const connection = await dialer.dial(multiaddr(`/ip4/127.0.0.1/tcp/${proxy.port}/p2p/${listener.peerId.toString()}`))
    expect(connection.encryption).toBe(SECURE_CHANNEL_PROTOCOL)
    await sendAll(await connection.newStream(PROTOCOL), data)
    await until('the listener to close the connection', () => errors.length > 0 && listener.getConnections().length === 0)
    await until('the listener\'s stream to end', () => received.done)
    return { received, data, errors, listener }
  }

  function expectNoCorruptByte (received: Received, data: Buffer): void {
    expect(received.bytes.byteLength).toBeLessThan(data.byteLength)
    expect(received.bytes.equals(data.subarray(0, received.bytes.byteLength))).toBe(true)
  }

  it('a flipped byte closes the connection: the record fails authentication', async () => {
    const { received, data, errors } = await attack(onThirdBigRecord(record => {
      record[record.byteLength >> 1] ^= 0x01
      return [record]
    }))
    expect(errors[0]).toBeInstanceOf(ProtocolError)
    expect(errors[0].message).toMatch(/failed authentication/)
    expectNoCorruptByte(received, data)
  })

  it('a replayed record closes the connection', async () => {
    const { received, data, errors } = await attack(onThirdBigRecord(record => [record, record]))
    expect(errors[0]).toBeInstanceOf(ProtocolError)
    expect(errors[0].message).toMatch(/failed authentication/)
    expectNoCorruptByte(received, data)
  })

  it('two records swapped close the connection', async () => {
    let held: Buffer | undefined
    let big = 0
    const { received, data, errors } = await attack((_index, record) => {
      if (record.byteLength < BIG) return { forward: [record] }
      big++
      if (big === 3) {
        held = record
        return { forward: [] }
      }
      if (big === 4 && held !== undefined) return { forward: [record, held] }
      return { forward: [record] }
    })
    expect(errors[0]).toBeInstanceOf(ProtocolError)
    expect(errors[0].message).toMatch(/failed authentication/)
    expectNoCorruptByte(received, data)
  })

  it('a connection cut inside a record, then closed cleanly, is a truncation, not an end', async () => {
    const { received, data, errors } = await attack(onThirdBigRecord(record => ({ forward: [record.subarray(0, record.byteLength >> 1)], end: true })))
    expect(errors[0]).toBeInstanceOf(NetworkError)
    expect(errors[0].message).toMatch(/truncated/)
    expectNoCorruptByte(received, data)
  })

  it('a connection closed cleanly between records, without the close record, is a truncation', async () => {
    const { received, data, errors } = await attack(onThirdBigRecord(() => ({ forward: [], end: true })))
    expect(errors[0]).toBeInstanceOf(NetworkError)
    expect(errors[0].message).toMatch(/truncated/)
    expectNoCorruptByte(received, data)
  })
})
