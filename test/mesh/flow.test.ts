import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { createMeshNode, FrameReader, send } from '../../mesh/index.ts'
import type { MeshNode } from '../../mesh/index.ts'

const PROTOCOL = '/staccato/test-flow/1'
const MiB = 1024 * 1024
const TOTAL = 64 * MiB

/** The byte at position i of the test stream, so that order and content are checked, not only length. */
function pattern (offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (offset + i) % 251
  return out
}

describe('back-pressure on mesh streams, both ways', () => {
  let a: MeshNode
  let b: MeshNode
  const seen = { maxSendBuffer: 0, maxReadBuffer: 0, paused: false }

  beforeAll(async () => {
    a = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    b = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    await a.handle(PROTOCOL, async (stream: Stream) => {
      // A fast sender: it may only run ahead as far as the receiver's window.
      for (let sent = 0; sent < TOTAL; sent += MiB) {
        await send(stream, pattern(sent, MiB))
        seen.maxSendBuffer = Math.max(seen.maxSendBuffer, stream.writeBufferLength)
      }
      await stream.close()
    })
  })
  afterAll(async () => {
    await b?.stop()
    await a?.stop()
  })

  it('a slow reader pauses the stream, memory stays bounded on both ends, and every byte arrives in order', async () => {
    const stream = await b.dialProtocol(a.getMultiaddrs(), PROTOCOL)
    const reader = new FrameReader(stream)
    let offset = 0
    let chunks = 0
    for await (const chunk of reader.readBytes(TOTAL)) {
      expect(Buffer.from(chunk).equals(Buffer.from(pattern(offset, chunk.byteLength)))).toBe(true)
      offset += chunk.byteLength
      seen.maxReadBuffer = Math.max(seen.maxReadBuffer, stream.readBufferLength)
      seen.paused ||= stream.readStatus === 'paused'
      // Slower than the network: a disk that cannot keep up.
      if (++chunks % 16 === 0) await sleep(2)
    }
    expect(offset).toBe(TOTAL)
    expect(await reader.readFrameOrEnd()).toBeUndefined()
    expect(seen.paused).toBe(true)
    // Bounded by the yamux window (16 MiB), never by the object's size.
    expect(seen.maxReadBuffer).toBeLessThanOrEqual(16 * MiB)
    expect(seen.maxSendBuffer).toBeLessThanOrEqual(17 * MiB)
  })
})
