import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DATA_PROTOCOL, DirectListener, createMeshNode, issuerKey, signTicket } from '../../mesh/index.ts'
import type { MeshNode } from '../../mesh/index.ts'
import { agent, file } from '../../protocols/index.ts'
import { startDataServer } from '../../agent/data-server.ts'
import { newCounters } from '../../agent/counters.ts'

/**
 * Larger than the mesh's initial yamux window (4 MiB, mesh/node.ts): a reader
 * that stops taking bytes leaves the server blocked on a full window, so a
 * stream the reader does not close holds one of the server's data slots.
 */
const FILE_BYTES = 6 * 1024 * 1024
/** More reads than the data handler's 64 inbound streams per connection (agent/data-server.ts). */
const READS = 66
/**
 * On the direct socket the reader's own `finally` destroys the socket, the
 * holder's write fails and it resets the stream: a few reads show that this
 * still ends both sides (each read costs a socket and a key agreement).
 */
const DIRECT_READS = 8

/**
 * agent:// reads whose consumer stops before the end (a `break`, an error
 * downstream): the libp2p stream (and the direct socket) must be ended at
 * once, so that the holder's serve loop ends and its stream slot is free.
 * Real data server, real mesh nodes and plug-in, on loopback.
 */
describe('agent:// read stopped early', () => {
  let dir: string
  let coordinatorKey: PrivateKey
  let source: MeshNode
  let reader: MeshNode
  let listener: DirectListener
  const url = new URL('agent://src/vol/big.bin')

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-early-stop-'))
    await writeFile(join(dir, 'big.bin'), randomBytes(FILE_BYTES))
    coordinatorKey = await generateKeyPair('Ed25519')
    source = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    reader = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    listener = await DirectListener.open({ host: '127.0.0.1', port: 0 })
    await startDataServer({
      node: source,
      self: 'src',
      issuer: issuerKey(peerIdFromPrivateKey(coordinatorKey).toString()),
      plugins: { volumes: file({ volumes: [{ name: 'vol', root: dir, readOnly: true }] }), byScheme: new Map() },
      counters: newCounters(),
      log: () => {},
      direct: { listener }
    })
  })
  afterAll(async () => {
    await listener.close()
    await reader.stop()
    await source.stop()
    await rm(dir, { recursive: true, force: true })
  })

  async function plugin (direct: boolean): Promise<ReturnType<typeof agent>> {
    const ticket = await signTicket(coordinatorKey, { v: 1, tid: 'tr_early', src: url.href, off: 0, rdr: reader.peerId.toString(), exp: Math.floor(Date.now() / 1000) + 600 })
    return agent({ node: reader, peer: { peerId: source.peerId.toString(), addrs: source.getMultiaddrs().map(String) }, ticket, direct })
  }

  /** Data streams still open on one node's connections. */
  const openDataStreams = (node: MeshNode): number => node.getConnections().flatMap(c => c.streams).filter(s => s.protocol === DATA_PROTOCOL).length

  /** Polls a condition that the network settles; bounded (about 20 s), it never passes on time alone. */
  async function until (cond: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 1000 && !cond(); i++) await sleep(20)
    if (!cond()) throw new Error(`never happened: ${what}`)
  }

  for (const direct of [false, true]) {
    it(`ends the stream of each read its consumer stops, ${direct ? 'on the direct socket' : 'on the libp2p stream'}: the holder's slots stay free`, async () => {
      const p = await plugin(direct)
      for (let i = 0; i < (direct ? DIRECT_READS : READS); i++) {
        let got = 0
        const stopped = (async () => {
          for await (const chunk of p.read(url, { offset: 0 })) {
            got += chunk.byteLength
            // Half stop with a break, half with an error in the consumer: both end the generator by return().
            if (i % 2 === 0) break
            throw new Error('downstream failed')
          }
        })()
        if (i % 2 === 0) await stopped
        else await expect(stopped).rejects.toThrow(/downstream failed/)
        expect(got).toBeGreaterThan(0)
        expect(got).toBeLessThan(FILE_BYTES)
      }
      await until(() => openDataStreams(source) === 0 && openDataStreams(reader) === 0, `no data stream left open (holder ${openDataStreams(source)}, reader ${openDataStreams(reader)})`)
      // A whole read after them all is served.
      let total = 0
      for await (const chunk of p.read(url, { offset: 0 })) total += chunk.byteLength
      expect(total).toBe(FILE_BYTES)
    })
  }
})
