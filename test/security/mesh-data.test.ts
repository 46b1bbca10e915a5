import { createHash, randomBytes } from 'node:crypto'
import { mkdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DATA_PROTOCOL, FrameReader, WIRE_VERSION, createMeshNode, encodeFrame, loadOrCreateIdentity, sendFrame, signTicket } from '../../mesh/index.ts'
import type { MeshNode, TicketClaims } from '../../mesh/index.ts'
import { TestMesh } from '../helpers/mesh.ts'

const FILE_BYTES = 256 * 1024

interface Answer { header: { ok: boolean, error?: { code: string, message: string }, length?: number }, bytes: Buffer }

/**
 * Attacks on an agent's data protocol from peers that speak it directly:
 * every one must be refused before a byte of any file is read, and the
 * agent's own counters say so.
 */
describe('mesh: the data protocol serves only ticket holders, only what the ticket names', () => {
  let mesh: TestMesh
  let coordinatorKey: PrivateKey
  let target: string
  let secret: Buffer
  const nodes: MeshNode[] = []

  async function peer (key?: PrivateKey): Promise<MeshNode> {
    const node = await createMeshNode({ privateKey: key ?? await generateKeyPair('Ed25519'), listen: [] })
    nodes.push(node)
    return node
  }

  async function ticket (claims: Partial<TicketClaims> & { rdr: string }, key = coordinatorKey): Promise<string> {
    return await signTicket(key, { v: 1, tid: 'tr_attack', src: 'agent://a/vol/a.img', off: 0, exp: Math.floor(Date.now() / 1000) + 600, ...claims })
  }

  /** One request on a fresh stream: a header object, or raw bytes for malformed ones. */
  async function ask (node: MeshNode, request: Record<string, unknown> | Uint8Array): Promise<Answer> {
    const stream = await node.dialProtocol(multiaddr(target), DATA_PROTOCOL)
    if (request instanceof Uint8Array) stream.send(request)
    else await sendFrame(stream, { v: WIRE_VERSION, offset: 0, digest: false, ...request })
    const reader = new FrameReader(stream)
    const header = await reader.readFrame() as Answer['header']
    const chunks: Uint8Array[] = []
    if (header.ok) {
      for await (const chunk of reader.readBytes(header.length ?? 0)) chunks.push(chunk.slice())
      await reader.readFrame()
    }
    await stream.close().catch(() => {})
    return { header, bytes: Buffer.concat(chunks) }
  }

  async function counters (): Promise<{ bytesServed: number, dataRefused: number, dataRequests: number }> {
    return (await mesh.status('a')).counters
  }

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mkdir(join(mesh.dir, 'volumes', 'a-other'), { recursive: true })
    await mkdir(join(mesh.dir, 'outside'), { recursive: true })
    await Promise.all([mesh.startAgent('a', ['--volume', `other=${join(mesh.dir, 'volumes', 'a-other')}`]), mesh.startAgent('b')])
    secret = randomBytes(FILE_BYTES)
    await writeFile(join(mesh.volume('a'), 'a.img'), randomBytes(FILE_BYTES))
    await writeFile(join(mesh.volume('a'), 'b.img'), secret)
    await writeFile(join(mesh.dir, 'volumes', 'a-other', 'a.img'), secret)
    await writeFile(join(mesh.dir, 'outside', 'secret.img'), secret)
    await symlink(join(mesh.dir, 'outside', 'secret.img'), join(mesh.volume('a'), 'link.img'))
    // The coordinator's own key, read from its data directory: what a real ticket is signed with.
    coordinatorKey = await loadOrCreateIdentity(join(mesh.dir, 'coordinator'))
    const info = mesh.agents.get('a')?.info
    if (info === undefined) throw new Error('agent a did not start')
    target = info.addrs.find(a => a.includes('/127.0.0.1/')) ?? info.addrs[0]
    if (!target.includes('/p2p/')) target += `/p2p/${info.peerId}`
  })
  afterAll(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await mesh.stop()
  })

  it('serves a peer holding a ticket issued to it (the control for every attack below)', async () => {
    const holder = await peer()
    const before = await counters()
    const res = await ask(holder, { ticket: await ticket({ rdr: holder.peerId.toString() }), source: 'agent://a/vol/a.img' })
    expect(res.header.ok).toBe(true)
    expect(res.bytes.length).toBe(FILE_BYTES)
    const after = await counters()
    expect(after.bytesServed - before.bytesServed).toBe(FILE_BYTES)
    expect(after.dataRefused).toBe(before.dataRefused)
  })

  it('refuses every attack, reads nothing, and counts each refusal', async () => {
    const stranger = await peer()
    const holder = await peer()
    // Agent b is enrolled; a process holding its key plays an enrolled agent that stole another's ticket.
    const enrolledB = await peer(await loadOrCreateIdentity(join(mesh.dir, 'agents', 'b')))
    const forger = await generateKeyPair('Ed25519')
    const own = await ticket({ rdr: holder.peerId.toString() })
    const now = Math.floor(Date.now() / 1000)

    const outside = ['permission_denied', 'invalid_argument']
    const attacks: Array<[string, MeshNode, Record<string, unknown> | Uint8Array, string | string[]]> = [
      ['a stranger with no ticket', stranger, { ticket: 'none.none', source: 'agent://a/vol/b.img' }, 'ticket_invalid'],
      ['a stranger with a ticket it signed itself', stranger, { ticket: await ticket({ rdr: stranger.peerId.toString() }, forger), source: 'agent://a/vol/a.img' }, 'ticket_invalid'],
      ['a stranger with a stolen ticket', stranger, { ticket: own, source: 'agent://a/vol/a.img' }, 'ticket_invalid'],
      ['an enrolled agent with a stolen ticket', enrolledB, { ticket: own, source: 'agent://a/vol/a.img' }, 'ticket_invalid'],
      ['an expired ticket', holder, { ticket: await ticket({ rdr: holder.peerId.toString(), exp: now - 1 }), source: 'agent://a/vol/a.img' }, 'ticket_invalid'],
      ['a ticket for a.img asking for ../b.img', holder, { ticket: own, source: 'agent://a/vol/../b.img' }, 'ticket_invalid'],
      ['a ticket for a.img asking for %2e%2e%2fb.img', holder, { ticket: own, source: 'agent://a/vol/%2e%2e%2fb.img' }, 'ticket_invalid'],
      ['a ticket for a.img asking for b.img', holder, { ticket: own, source: 'agent://a/vol/b.img' }, 'ticket_invalid'],
      ['a ticket for a.img asking for another volume', holder, { ticket: own, source: 'agent://a/other/a.img' }, 'ticket_invalid'],
      ['a ticket for a range asking beyond it', holder, { ticket: await ticket({ rdr: holder.peerId.toString(), end: 1024 }), source: 'agent://a/vol/a.img', length: 4096 }, 'ticket_invalid'],
      ['a ticket for a range asking before it', holder, { ticket: await ticket({ rdr: holder.peerId.toString(), off: 1024 }), source: 'agent://a/vol/a.img', offset: 0 }, 'ticket_invalid'],
      // Even the coordinator's own signature does not open a way out of a volume.
      ['a signed ticket for an encoded traversal', holder, { ticket: await ticket({ rdr: holder.peerId.toString(), src: 'agent://a/vol/%2e%2e%2f..%2foutside%2fsecret.img' }), source: 'agent://a/vol/%2e%2e%2f..%2foutside%2fsecret.img' }, outside],
      ['a signed ticket for a NUL byte', holder, { ticket: await ticket({ rdr: holder.peerId.toString(), src: 'agent://a/vol/b.img%00.txt' }), source: 'agent://a/vol/b.img%00.txt' }, outside],
      ['a signed ticket for a symlink out of the volume', holder, { ticket: await ticket({ rdr: holder.peerId.toString(), src: 'agent://a/vol/link.img' }), source: 'agent://a/vol/link.img' }, 'permission_denied'],
      ['a header that is not JSON', stranger, new Uint8Array([0, 0, 0, 3, 0x7b, 0x7b, 0x7b]), 'protocol_error'],
      ['a header announcing 4 GiB', stranger, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x7b]), 'protocol_error'],
      ['a header with unknown fields', stranger, encodeFrame({ v: WIRE_VERSION, ticket: own, source: 'agent://a/vol/a.img', offset: 0, digest: false, admin: true }), 'protocol_error'],
      ['a header of another version', stranger, encodeFrame({ v: 2, ticket: own, source: 'agent://a/vol/a.img', offset: 0, digest: false }), 'protocol_error']
    ]
    const before = await counters()
    for (const [what, node, request, code] of attacks) {
      const res = await ask(node, request)
      expect(res.header.ok, what).toBe(false)
      expect([code].flat(), `${what}: ${res.header.error?.message}`).toContain(res.header.error?.code)
      expect(res.bytes.length, what).toBe(0)
    }
    const after = await counters()
    expect(after.bytesServed).toBe(before.bytesServed)
    expect(after.dataRefused - before.dataRefused).toBe(attacks.length)
    // The agent is still serving, and still only to ticket holders.
    const res = await ask(holder, { ticket: await ticket({ rdr: holder.peerId.toString(), src: 'agent://a/vol/b.img' }), source: 'agent://a/vol/b.img' })
    expect(createHash('sha256').update(res.bytes).digest('hex')).toBe(createHash('sha256').update(secret).digest('hex'))
  })

  it('caps the data streams one peer may hold open, and serves again once they close', async () => {
    const flooder = await peer()
    const before = await counters()
    const opened = 80
    let reset = 0
    // Streams that never send a header: the agent takes 64 and resets the rest at once.
    const streams = await Promise.all(Array.from({ length: opened }, async () => {
      const stream = await flooder.dialProtocol(multiaddr(target), DATA_PROTOCOL, { maxOutboundStreams: 1000 })
      void stream[Symbol.asyncIterator]().next().then(() => { reset++ }, () => { reset++ })
      return stream
    }))
    while (reset < opened - 64) await new Promise(resolve => setTimeout(resolve, 20))
    const during = await counters()
    expect(during.dataRequests - before.dataRequests).toBe(64)
    expect(reset).toBe(opened - 64)
    for (const s of streams) await s.close().catch(() => {})
    // Each closed stream is refused (no header) and frees its slot.
    while ((await counters()).dataRefused - before.dataRefused < 64) await new Promise(resolve => setTimeout(resolve, 50))
    const res = await ask(flooder, { ticket: await ticket({ rdr: flooder.peerId.toString() }), source: 'agent://a/vol/a.img' })
    expect(res.header.ok).toBe(true)
    expect(res.bytes.length).toBe(FILE_BYTES)
  })
})
