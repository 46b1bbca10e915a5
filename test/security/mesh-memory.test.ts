import { randomBytes } from 'node:crypto'
import { open, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DATA_PROTOCOL, WIRE_VERSION, loadOrCreateIdentity, sendFrame, signTicket } from '../../mesh/index.ts'
import { TestMesh } from '../helpers/mesh.ts'

const MiB = 1024 * 1024
const FILE_BYTES = 48 * MiB
const STREAMS = 64
// The agent's yamux starts every stream at this window (mesh/node.ts). The
// holder below never grows it, so each stream's first window is all the agent
// may send: once that has arrived, nothing more moves.
const INITIAL_WINDOW = 4 * MiB

/** Peak and current resident memory of a process, from /proc. */
async function memory (pid: number): Promise<{ rss: number, peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rss: kib('VmRSS'), peak: kib('VmHWM') }
}

/**
 * A ticket holder that asks for a file on many streams and never reads them
 * must not make the serving agent hold the file in memory once per stream:
 * what the agent queues for a stream is bounded by that stream's own window.
 */
describe('mesh: a reader that never reads costs the source bounded memory', () => {
  let mesh: TestMesh
  let holder: Libp2p

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('a')
    // Written in pieces so that the test process itself does not hold the file.
    const file = await open(join(mesh.volume('a'), 'big.img'), 'w')
    for (let i = 0; i < FILE_BYTES / (4 * MiB); i++) await file.write(randomBytes(4 * MiB))
    await file.close()
    holder = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({ streamOptions: { initialStreamWindowSize: INITIAL_WINDOW, maxStreamWindowSize: INITIAL_WINDOW } })],
      connectionGater: { denyDialMultiaddr: () => false }
    })
  })
  afterAll(async () => {
    await holder?.stop()
    await mesh.stop()
  })

  it(`keeps the agent under 400 MiB with ${STREAMS} paused streams for a ${FILE_BYTES / MiB} MiB file on one connection`, async () => {
    const agent = mesh.agents.get('a')
    if (agent?.child.pid === undefined) throw new Error('agent a did not start')
    const pid = agent.child.pid
    let target = agent.info.addrs.find(a => a.includes('/127.0.0.1/')) ?? agent.info.addrs[0]
    if (!target.includes('/p2p/')) target += `/p2p/${agent.info.peerId}`
    const coordinatorKey = await loadOrCreateIdentity(join(mesh.dir, 'coordinator'))
    const ticket = await signTicket(coordinatorKey, {
      v: 1, tid: 'tr_hog', src: 'agent://a/vol/big.img', off: 0, rdr: holder.peerId.toString(), exp: Math.floor(Date.now() / 1000) + 600
    })
    const before = await memory(pid)

    const streams: Stream[] = []
    for (let i = 0; i < STREAMS; i++) {
      const stream = await holder.dialProtocol(multiaddr(target), DATA_PROTOCOL)
      // Paused: yamux grants the agent no window beyond the first one.
      stream.pause()
      await sendFrame(stream, { v: WIRE_VERSION, ticket, source: 'agent://a/vol/big.img', offset: 0, digest: false })
      streams.push(stream)
    }
    expect(holder.getConnections().length).toBe(1)

    // Every stream's window has crossed the connection: all the drains it caused are behind us.
    await mesh.until(async () => streams.every(s => s.readBufferLength >= INITIAL_WINDOW), 60_000, 'the window of every stream')
    const after = await memory(pid)
    const served = (await mesh.status('a')).counters.bytesServed
    for (const s of streams) s.abort(new Error('test over'))

    // Per stream: its window and a chunk or two queued behind it, not the file.
    expect(served).toBeLessThan(STREAMS * (INITIAL_WINDOW + 4 * MiB))
    expect(after.peak, `RSS ${before.rss / MiB | 0} MiB before, peak ${after.peak / MiB | 0} MiB after`).toBeLessThan(400 * MiB)
  })
})
