import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FrameReader, createMeshNode, sendFrame } from '../../mesh/index.ts'
import type { MeshNode } from '../../mesh/index.ts'
import { hostKey } from '../../mesh/handshake-gate.ts'
import { RawFlood, loopbackHosts } from '../helpers/flood.ts'

const ECHO = '/staccato-test/echo/1'

/**
 * Sockets that connect and never speak must not keep other peers out: with
 * them holding what they can, fresh peers from another address still connect
 * and are answered.
 */
describe('mesh node: handshakes are bounded per source host', () => {
  let server: MeshNode
  let target: string
  let port: number
  const others: MeshNode[] = []

  beforeAll(async () => {
    server = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    await server.handle(ECHO, async stream => {
      const reader = new FrameReader(stream)
      await sendFrame(stream, await reader.readFrame())
      await stream.close()
    })
    target = server.getMultiaddrs()[0].toString()
    port = Number(server.getMultiaddrs()[0].getComponents().find(c => c.name === 'tcp')?.value)
  })
  afterAll(async () => {
    await Promise.all(others.map(async n => { await n.stop() }))
    await server.stop()
  })

  async function echoFromFreshPeer (n: number): Promise<unknown> {
    const node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    others.push(node)
    const stream = await node.dialProtocol(multiaddr(target), ECHO, { signal: AbortSignal.timeout(10_000) })
    await sendFrame(stream, { n })
    const answer = await new FrameReader(stream).readFrame()
    await stream.close()
    return answer
  }

  it('answers 4 of 4 fresh peers while 8 other hosts hold 200 silent sockets against it', async () => {
    const flood = new RawFlood(port, loopbackHosts(8), 25).start()
    try {
      await flood.saturated()
      const results = []
      for (let n = 0; n < 4; n++) results.push(await echoFromFreshPeer(n).then(v => v, (err: Error) => err.name))
      expect(results).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }])
    } finally {
      flood.stop()
    }
  })
})

describe('hostKey: the unit one attacker controls', () => {
  it('is the IPv4 address, or the IPv6 /64 (an IPv4-mapped address counts as IPv4)', () => {
    expect(hostKey(multiaddr('/ip4/10.1.2.3/tcp/4001'))).toBe('10.1.2.3')
    expect(hostKey(multiaddr('/ip6/2001:db8:0:1::5/tcp/4001'))).toBe('2001:db8:0:1::/64')
    expect(hostKey(multiaddr('/ip6/2001:db8:0:1:ffff:1:2:3/tcp/4001'))).toBe('2001:db8:0:1::/64')
    expect(hostKey(multiaddr('/ip6/::1/tcp/4001'))).toBe('0:0:0:0::/64')
    expect(hostKey(multiaddr('/ip6/::ffff:10.1.2.3/tcp/4001'))).toBe('10.1.2.3')
    expect(hostKey(multiaddr('/dns4/example.org/tcp/4001'))).toBeUndefined()
  })
})
