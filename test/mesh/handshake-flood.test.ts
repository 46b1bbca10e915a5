import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import type { TCPSocketOptions } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
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

describe('mesh node: one host holds at most a quarter of the connections', () => {
  const MAX_CONNECTIONS = 20
  let server: MeshNode
  const nodes: Libp2p[] = []

  beforeAll(async () => {
    server = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], maxConnections: MAX_CONNECTIONS })
    await server.handle(ECHO, async stream => {
      await sendFrame(stream, await new FrameReader(stream).readFrame())
      await stream.close()
    })
  })
  afterAll(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await server.stop()
  })

  /** A node dialing from `host`, with a key of its own: any key passes Noise. */
  async function nodeFrom (host: string): Promise<Libp2p> {
    const node = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      // net.connect takes localAddress; @libp2p/tcp passes dialOpts through without naming it.
      transports: [tcp({ dialOpts: { localAddress: host } as TCPSocketOptions })],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionGater: { denyDialMultiaddr: () => false }
    })
    nodes.push(node)
    return node
  }

  it('refuses a host that makes a fresh key per connection once it holds its share, and keeps serving others', async () => {
    let held = 0
    // Paced under libp2p's 5 new connections per second per host, so that only the cap can refuse.
    for (let attempt = 0; attempt < MAX_CONNECTIONS + 10 && held < MAX_CONNECTIONS; attempt++) {
      const node = await nodeFrom('127.0.0.2')
      if (await node.dial(server.getMultiaddrs()).then(() => true, () => false)) held++
      await new Promise(resolve => setTimeout(resolve, 250))
    }
    expect(held).toBe(MAX_CONNECTIONS / 4)
    const honest = await nodeFrom('127.0.0.1')
    const stream = await honest.dialProtocol(server.getMultiaddrs(), ECHO)
    await sendFrame(stream, { ok: 1 })
    expect(await new FrameReader(stream).readFrame()).toEqual({ ok: 1 })
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
