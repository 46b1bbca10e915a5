import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import type { Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DirectListener, createMeshNode, issuerKey, signTicket } from '../../mesh/index.ts'
import type { MeshNode } from '../../mesh/index.ts'
import { agent, file } from '../../protocols/index.ts'
import { startDataServer } from '../../agent/data-server.ts'
import type { DataServerOptions } from '../../agent/data-server.ts'
import { newCounters } from '../../agent/counters.ts'

const FILE_BYTES = 3 * 1024 * 1024 + 17

/**
 * The data server and the agent plug-in on the direct data socket, in one
 * process on loopback: the bytes take the data port when it is reachable
 * (counted by a relay in front of it), the libp2p stream when it is not (the
 * transfer never fails for that), and a byte flipped on the data port ends
 * the read with a protocol error before the damaged record is passed on.
 */
describe('agent data server: the direct data socket and its fallback', () => {
  let dir: string
  let coordinatorKey: PrivateKey
  let source: MeshNode
  let reader: MeshNode
  let listener: DirectListener
  let options: DataServerOptions
  let content: Buffer
  const logs: Array<{ msg: string, fields?: Record<string, unknown> }> = []
  const servers: Server[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-direct-data-'))
    content = randomBytes(FILE_BYTES)
    await writeFile(join(dir, 'a.bin'), content)
    coordinatorKey = await generateKeyPair('Ed25519')
    source = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    reader = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    listener = await DirectListener.open({ host: '127.0.0.1', port: 0 })
    options = {
      node: source,
      self: 'src',
      issuer: issuerKey(peerIdFromPrivateKey(coordinatorKey).toString()),
      plugins: { volumes: file({ volumes: [{ name: 'vol', root: dir, readOnly: true }] }), byScheme: new Map() },
      counters: newCounters(),
      log: (msg, fields) => { logs.push({ msg, fields }) },
      direct: { listener }
    }
    await startDataServer(options)
  })
  afterAll(async () => {
    for (const s of servers) s.close()
    await listener.close()
    await reader.stop()
    await source.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const url = new URL('agent://src/vol/a.bin')

  async function read (direct = true): Promise<{ bytes: Buffer, digest?: string, error?: unknown }> {
    const ticket = await signTicket(coordinatorKey, { v: 1, tid: 'tr_direct', src: url.href, off: 0, rdr: reader.peerId.toString(), exp: Math.floor(Date.now() / 1000) + 600 })
    const plugin = agent({ node: reader, peer: { peerId: source.peerId.toString(), addrs: source.getMultiaddrs().map(String) }, ticket, direct })
    const chunks: Buffer[] = []
    let digest: string | undefined
    try {
      for await (const c of plugin.read(url, { offset: 0, onDigest: d => { digest = d } })) chunks.push(Buffer.from(c))
      return { bytes: Buffer.concat(chunks), digest }
    } catch (error) {
      return { bytes: Buffer.concat(chunks), error }
    }
  }

  /** A relay to the data port that counts what it carries to the reader and may flip one byte of it. */
  async function relay (flipAt?: number): Promise<{ port: number, carried: () => number }> {
    let carried = 0
    const server = createServer(client => {
      const upstream = connect({ host: '127.0.0.1', port: listener.port })
      client.pipe(upstream)
      upstream.on('data', (d: Buffer) => {
        if (flipAt !== undefined && carried <= flipAt && flipAt < carried + d.byteLength) {
          d = Buffer.from(d)
          d[flipAt - carried] ^= 0x40
        }
        carried += d.byteLength
        client.write(d)
      })
      upstream.on('end', () => client.end())
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
      client.on('error', () => {})
      upstream.on('error', () => {})
    })
    servers.push(server)
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const addr = server.address()
    if (addr === null || typeof addr !== 'object') throw new Error('no relay port')
    return { port: addr.port, carried: () => carried }
  }

  const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

  it('sends the bytes and the trailer\'s digest on the data port', async () => {
    const r = await relay()
    options.direct = { listener, port: r.port }
    const got = await read()
    expect(got.error).toBeUndefined()
    expect(got.bytes.equals(content)).toBe(true)
    expect(got.digest).toBe(sha256(content))
    // Sealed records: more than the file's bytes went through the data port.
    expect(r.carried()).toBeGreaterThan(FILE_BYTES)
  })

  it('falls back to the libp2p stream, with a log line, when the data port cannot be reached', async () => {
    const closed = createServer()
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as { port: number }).port
    await new Promise<void>(resolve => closed.close(() => { resolve() }))
    options.direct = { listener, port }
    logs.length = 0
    const got = await read()
    expect(got.error).toBeUndefined()
    expect(got.bytes.equals(content)).toBe(true)
    expect(got.digest).toBe(sha256(content))
    const line = logs.find(l => l.msg.startsWith('direct data socket not used'))
    expect(line?.fields?.reason).toMatch(/cannot connect/)
    expect(listener.pending).toBe(0)
  })

  it('never connects to a host the source names other than the one it is reached at: it takes the stream instead', async () => {
    const r = await relay()
    // 127.0.0.2 is loopback too, but not the address the reader reached the source's mesh port at (127.0.0.1).
    options.direct = { listener, port: r.port, host: '127.0.0.2' }
    logs.length = 0
    const got = await read()
    expect(got.error).toBeUndefined()
    expect(got.bytes.equals(content)).toBe(true)
    expect(r.carried()).toBe(0)
    const line = logs.find(l => l.msg.startsWith('direct data socket not used'))
    expect(line?.fields?.reason).toMatch(/named 127\.0\.0\.2 for its data port, not the host it is reached at \(127\.0\.0\.1\)/)
  })

  it('serves a reader that offers no direct socket (an agent from before it) on the stream', async () => {
    const r = await relay()
    options.direct = { listener, port: r.port }
    const got = await read(false)
    expect(got.bytes.equals(content)).toBe(true)
    expect(got.digest).toBe(sha256(content))
    expect(r.carried()).toBe(0)
  })

  it('ends the read with a protocol error when a byte is flipped on the data port, passing on no byte of the damaged record', async () => {
    // Inside the second record: the first (1 MiB, the file plug-in's read size) is whole and authentic.
    const r = await relay(1024 * 1024 + 100_000)
    options.direct = { listener, port: r.port }
    const got = await read()
    expect(got.error).toMatchObject({ code: 'protocol_error' })
    expect((got.error as Error).message).toMatch(/failed authentication/)
    expect(got.bytes.byteLength).toBe(1024 * 1024)
    expect(got.bytes.equals(content.subarray(0, 1024 * 1024))).toBe(true)
  })
})
