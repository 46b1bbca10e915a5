import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DATA_PROTOCOL, FrameReader, WIRE_VERSION, createMeshNode, send, sendFrame } from '../../mesh/index.ts'
import type { MeshNode } from '../../mesh/index.ts'
import { agent } from '../../protocols/index.ts'

type Behaviour = (stream: Stream) => Promise<void>

/**
 * A source agent that goes away before it answers (its process killed, its
 * stream closed) is a network failure the transfer retries, never a
 * "malformed data response" from a peer that broke the protocol.
 */
describe('agent plug-in: a source that ends its stream early', () => {
  let source: MeshNode
  let reader: MeshNode
  let behaviour: Behaviour = async () => {}

  beforeAll(async () => {
    source = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    reader = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    await source.handle(DATA_PROTOCOL, async stream => {
      await new FrameReader(stream).readFrame()
      await behaviour(stream)
    })
  })
  afterAll(async () => {
    await reader.stop()
    await source.stop()
  })

  function plugin (): ReturnType<typeof agent> {
    return agent({ node: reader, peer: { peerId: source.peerId.toString(), addrs: source.getMultiaddrs().map(String) }, ticket: 'not checked here' })
  }
  const url = new URL('agent://source/vol/x.bin')

  it('is a retryable network error when the source closes before its response header', async () => {
    behaviour = async stream => { await stream.close() }
    const err = await plugin().stat(url).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'network', retryable: true })
  })

  it('is a retryable network error when the source closes before its trailer', async () => {
    behaviour = async stream => {
      await sendFrame(stream, { v: WIRE_VERSION, ok: true, size: 4, mtime: 1, length: 4 })
      await send(stream, new Uint8Array(4))
      await stream.close()
    }
    const err = await (async () => { for await (const _ of plugin().read(url, { offset: 0 })) { /* drain */ } })().catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'network', retryable: true })
  })
})
