import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import type { Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DirectListener, FrameReader, InvalidArgumentError, ProtocolError, TREE_BATCH, TREE_PROTOCOL, TREE_READ_FILES, WIRE_VERSION, createMeshNode, issuerKey, send, sendFrame, signTicket } from '../../mesh/index.ts'
import type { MeshNode } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import { startTreeServer } from '../../agent/tree/server.ts'
import type { TreeServerOptions } from '../../agent/tree/server.ts'
import { DIRECT_BATCH_BYTES, DIRECT_PACKED_BYTES, LARGE_FILE_BYTES, readFiles } from '../../agent/tree/client.ts'
import type { TreePeer } from '../../agent/tree/client.ts'
import { newCounters } from '../../agent/counters.ts'

const MiB = 1024 * 1024
// Over DIRECT_BATCH_BYTES together; a file that is not a whole number of 1 MiB reads; a small one among them.
const SIZES: Record<string, number> = { 'big.bin': 6 * MiB + 5, 'sub/more.bin': 3 * MiB, 'small.txt': 100 }
// Files just under the large-file size: together over DIRECT_BATCH_BYTES, but no large one among them.
const MANY = Array.from({ length: 12 }, (_, i) => `many/${i}.bin`)
for (const path of MANY) SIZES[path] = LARGE_FILE_BYTES - 1
/** Small files a reader takes packed: 80 × 4 KiB, over DIRECT_PACKED_BYTES. */
const PACKED = Array.from({ length: 80 }, (_, i) => `many/p${i}.bin`)
for (const path of PACKED) SIZES[path] = 4096
/** More small files than a holder before TREE_READ_FILES took in one request. */
const WIDE = Array.from({ length: TREE_BATCH + 44 }, (_, i) => `wide/${i}.txt`)
for (const path of WIDE) SIZES[path] = 64

/**
 * A tree's read batch on the holder's direct data socket, in one process on
 * loopback: a batch of large files takes the data port (counted by a relay in
 * front of it) with the same files and digests as on the stream; a batch of
 * small files stays on the stream; an unreachable data port sends the batch
 * on the stream (with a log line); a byte flipped on the data port ends the
 * batch with a protocol error.
 */
describe('tree read batches on the direct data socket', () => {
  let dir: string
  let coordinatorKey: PrivateKey
  let holder: MeshNode
  let reader: MeshNode
  let listener: DirectListener
  let options: TreeServerOptions
  const files = new Map<string, Buffer>()
  const logs: Array<{ msg: string, fields?: Record<string, unknown> }> = []
  const servers: Server[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-tree-direct-'))
    await mkdir(join(dir, 'tree', 'sub'), { recursive: true })
    await mkdir(join(dir, 'tree', 'many'), { recursive: true })
    await mkdir(join(dir, 'tree', 'wide'), { recursive: true })
    for (const [path, size] of Object.entries(SIZES)) files.set(path, randomBytes(size))
    for (const [path, content] of files) await writeFile(join(dir, 'tree', path), content)
    coordinatorKey = await generateKeyPair('Ed25519')
    holder = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    reader = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    listener = await DirectListener.open({ host: '127.0.0.1', port: 0 })
    const volumeList = [{ name: 'vol', root: dir, readOnly: true }]
    options = {
      node: holder,
      self: 'src',
      issuer: issuerKey(peerIdFromPrivateKey(coordinatorKey).toString()),
      volumes: file({ volumes: volumeList }),
      volumeList,
      counters: newCounters(),
      log: (msg, fields) => { logs.push({ msg, fields }) },
      direct: { listener }
    }
    await startTreeServer(options)
  })
  afterAll(async () => {
    for (const s of servers) s.close()
    await listener.close()
    await reader.stop()
    await holder.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const source = 'agent://src/vol/tree/'
  const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

  async function peer (): Promise<TreePeer> {
    const ticket = await signTicket(coordinatorKey, { v: 1, tid: 'tr_tree_direct', src: source, off: 0, rdr: reader.peerId.toString(), exp: Math.floor(Date.now() / 1000) + 600 })
    return { node: reader, peerId: holder.peerId.toString(), addrs: holder.getMultiaddrs().map(String), ticket, source }
  }

  /** Reads `paths` as one batch: each file's bytes and digest as the handler got them, or the error the batch ended with. */
  async function read (paths: string[]): Promise<{ got: Map<string, Buffer>, digests: Map<string, string | undefined>, error?: unknown }> {
    const got = new Map<string, Buffer>()
    const digests = new Map<string, string | undefined>()
    const batch = paths.map(path => ({ path, offset: 0, expect: { size: SIZES[path], mtime: 0 } }))
    // The holder checks size and mtime against its stat: take them from the volume.
    const volumes = options.volumes
    for (const f of batch) f.expect = await volumes.stat(new URL(`file:///vol/tree/${f.path}`))
    try {
      await readFiles(await peer(), batch, 'sha256', {
        file: async (run, chunks) => {
          const parts: Buffer[] = []
          for await (const c of chunks) parts.push(Buffer.from(c))
          got.set(run.path, Buffer.concat(parts))
        },
        end: async (path, digest) => { digests.set(path, digest.sha256) },
        error: async (_path, err) => { throw err }
      })
      return { got, digests }
    } catch (error) {
      return { got, digests, error }
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

  const all = ['big.bin', 'small.txt', 'sub/more.bin']
  const total = all.reduce((n, p) => n + SIZES[p], 0)

  it('sends a batch of large files, their headers and digests on the data port', async () => {
    expect(total).toBeGreaterThanOrEqual(DIRECT_BATCH_BYTES)
    const r = await relay()
    options.direct = { listener, port: r.port }
    const { got, digests, error } = await read(all)
    expect(error).toBeUndefined()
    for (const path of all) {
      expect(got.get(path)?.equals(files.get(path) as Buffer)).toBe(true)
      expect(digests.get(path)).toBe(sha256(files.get(path) as Buffer))
    }
    // Sealed records: more than the files' bytes went through the data port.
    expect(r.carried()).toBeGreaterThan(total)
  })

  it('keeps a batch of small files on the stream, even when they add up to more than a large batch', async () => {
    expect(MANY.reduce((n, p) => n + SIZES[p], 0)).toBeGreaterThanOrEqual(DIRECT_BATCH_BYTES)
    const r = await relay()
    options.direct = { listener, port: r.port }
    const { got, error } = await read(MANY)
    expect(error).toBeUndefined()
    for (const path of MANY) expect(got.get(path)?.equals(files.get(path) as Buffer)).toBe(true)
    expect(r.carried()).toBe(0)
  })

  it('sends packed small files on the data port, to a reader that takes packs', async () => {
    const packedBytes = PACKED.reduce((n, p) => n + SIZES[p], 0)
    expect(packedBytes).toBeGreaterThanOrEqual(DIRECT_PACKED_BYTES)
    const r = await relay()
    options.direct = { listener, port: r.port }
    const batch = await Promise.all(PACKED.map(async path => ({ path, offset: 0, expect: await options.volumes.stat(new URL(`file:///vol/tree/${path}`)) })))
    const got = new Map<string, Buffer>()
    let packs = 0
    const alone = async (): Promise<never> => { throw new Error('a small file sent alone') }
    await readFiles(await peer(), batch, 'sha256', {
      file: alone,
      end: alone,
      error: async (_path, err) => { throw err },
      files: async (runs, bytes) => {
        packs++
        let at = 0
        for (const run of runs) {
          const data = Buffer.from(bytes.subarray(at, at + run.size))
          at += run.size
          expect(run.sha256).toBe(sha256(data))
          got.set(run.path, data)
        }
      }
    })
    for (const path of PACKED) expect(got.get(path)?.equals(files.get(path) as Buffer)).toBe(true)
    expect(packs).toBeLessThan(PACKED.length / 10)
    expect(r.carried()).toBeGreaterThan(packedBytes)
  })

  /** Packs of small files as a packing reader takes them: each file's bytes, checked against its digest. */
  const packing = (got: Map<string, Buffer>): Parameters<typeof readFiles>[3] => {
    const alone = async (): Promise<never> => { throw new Error('a small file sent alone') }
    return {
      file: alone,
      end: alone,
      error: async (_path, err) => { throw err },
      files: async (runs, bytes) => {
        let at = 0
        for (const run of runs) {
          const data = Buffer.from(bytes.subarray(at, at + run.size))
          at += run.size
          expect(run.sha256).toBe(sha256(data))
          got.set(run.path, data)
        }
      }
    }
  }

  it('reads more small files than TREE_BATCH in one request (a stream and a data connection each cost both agents)', async () => {
    expect(WIDE.length).toBeGreaterThan(TREE_BATCH)
    expect(WIDE.length).toBeLessThanOrEqual(TREE_READ_FILES)
    const r = await relay()
    options.direct = { listener, port: r.port }
    const batch = await Promise.all(WIDE.map(async path => ({ path, offset: 0, expect: await options.volumes.stat(new URL(`file:///vol/tree/${path}`)) })))
    const got = new Map<string, Buffer>()
    const dial = reader.dialProtocol.bind(reader)
    let dials = 0
    reader.dialProtocol = (async (...a: Parameters<typeof dial>) => { dials++; return await dial(...a) }) as typeof reader.dialProtocol
    try {
      await readFiles(await peer(), batch, 'sha256', packing(got))
    } finally {
      reader.dialProtocol = dial
    }
    for (const path of WIDE) expect(got.get(path)?.equals(files.get(path) as Buffer)).toBe(true)
    expect(dials).toBe(1)
  })

  it('asks a holder from before TREE_READ_FILES again in requests of TREE_BATCH files, which its schema check refuses above that', async () => {
    // The old holder's side: its schema takes at most TREE_BATCH files a request; below that it sends each file alone.
    const old = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    const requests: number[] = []
    await old.handle(TREE_PROTOCOL, async stream => {
      const req = await new FrameReader(stream).readFrame() as { files: Array<{ path: string }> }
      requests.push(req.files.length)
      if (req.files.length > TREE_BATCH) {
        await sendFrame(stream, { v: WIRE_VERSION, t: 'error', error: new ProtocolError(`malformed tree request: /files must NOT have more than ${TREE_BATCH} items`).toJSON() })
      } else {
        for (const { path } of req.files) {
          const content = files.get(path) as Buffer
          await sendFrame(stream, { v: WIRE_VERSION, t: 'file', path, size: content.byteLength, mtime: 0, length: content.byteLength })
          await send(stream, content)
          await sendFrame(stream, { v: WIRE_VERSION, t: 'file-end', path, sha256: sha256(content) })
        }
        await sendFrame(stream, { v: WIRE_VERSION, t: 'end' })
      }
      await stream.close()
    })
    try {
      const ticket = await signTicket(coordinatorKey, { v: 1, tid: 'tr_tree_old_batch', src: source, off: 0, rdr: reader.peerId.toString(), exp: Math.floor(Date.now() / 1000) + 600 })
      const order: string[] = []
      const got = new Map<string, Buffer>()
      await readFiles({ node: reader, peerId: old.peerId.toString(), addrs: old.getMultiaddrs().map(String), ticket, source },
        WIDE.map(path => ({ path, offset: 0, expect: { size: SIZES[path], mtime: 0 } })), 'sha256', {
          file: async (run, chunks) => {
            const parts: Buffer[] = []
            for await (const c of chunks) parts.push(Buffer.from(c))
            got.set(run.path, Buffer.concat(parts))
            order.push(run.path)
          },
          end: async (path, digest) => { expect(digest.sha256).toBe(sha256(got.get(path) as Buffer)) },
          error: async (_path, err) => { throw err },
          files: async () => { throw new Error('a pack from a holder that sends none') }
        })
      expect(order).toEqual(WIDE)
      for (const path of WIDE) expect(got.get(path)?.equals(files.get(path) as Buffer)).toBe(true)
      expect(requests).toEqual([WIDE.length, TREE_BATCH, WIDE.length - TREE_BATCH])
    } finally {
      await old.stop()
    }
  })

  it('keeps a batch of small files on the stream', async () => {
    const r = await relay()
    options.direct = { listener, port: r.port }
    const { got, error } = await read(['small.txt'])
    expect(error).toBeUndefined()
    expect(got.get('small.txt')?.equals(files.get('small.txt') as Buffer)).toBe(true)
    expect(r.carried()).toBe(0)
  })

  it('sends the batch on the stream, with a log line, when the data port cannot be reached', async () => {
    const closed = createServer()
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as { port: number }).port
    await new Promise<void>(resolve => closed.close(() => { resolve() }))
    options.direct = { listener, port }
    logs.length = 0
    const { got, digests, error } = await read(all)
    expect(error).toBeUndefined()
    for (const path of all) expect(digests.get(path)).toBe(sha256(got.get(path) as Buffer))
    expect(got.get('big.bin')?.equals(files.get('big.bin') as Buffer)).toBe(true)
    const line = logs.find(l => l.msg.startsWith('direct data socket not used'))
    expect(line?.fields?.reason).toMatch(/cannot connect/)
    expect(listener.pending).toBe(0)
  })

  it('asks a holder from before the direct socket again without the offer, which it refuses as an unknown field', async () => {
    // The old holder's side of /staccato/tree/1: its request schema has no `direct`, so an offer is an invalid argument.
    const old = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    const requests: Array<Record<string, unknown>> = []
    const content = files.get('big.bin') as Buffer
    await old.handle(TREE_PROTOCOL, async stream => {
      const req = await new FrameReader(stream).readFrame() as Record<string, unknown>
      requests.push(req)
      if ('direct' in req) {
        await sendFrame(stream, { v: WIRE_VERSION, t: 'error', error: new InvalidArgumentError('tree request: unknown field direct').toJSON() })
      } else {
        await sendFrame(stream, { v: WIRE_VERSION, t: 'file', path: 'big.bin', size: content.byteLength, mtime: 0, length: content.byteLength })
        await send(stream, content)
        await sendFrame(stream, { v: WIRE_VERSION, t: 'file-end', path: 'big.bin', sha256: sha256(content) })
        await sendFrame(stream, { v: WIRE_VERSION, t: 'end' })
      }
      await stream.close()
    })
    try {
      const ticket = await signTicket(coordinatorKey, { v: 1, tid: 'tr_tree_old', src: source, off: 0, rdr: reader.peerId.toString(), exp: Math.floor(Date.now() / 1000) + 600 })
      const got: Buffer[] = []
      await readFiles({ node: reader, peerId: old.peerId.toString(), addrs: old.getMultiaddrs().map(String), ticket, source }, [
        { path: 'big.bin', offset: 0, expect: { size: content.byteLength, mtime: 0 } },
        { path: 'sub/more.bin', offset: 0, expect: { size: SIZES['sub/more.bin'], mtime: 0 } }
      ], 'sha256', {
        file: async (_run, chunks) => { for await (const c of chunks) got.push(Buffer.from(c)) },
        end: async () => {},
        error: async (_path, err) => { throw err }
      })
      expect(Buffer.concat(got).equals(content)).toBe(true)
      expect(requests.map(r => 'direct' in r)).toEqual([true, false])
    } finally {
      await old.stop()
    }
  })

  it('asks a holder from before the packs again without `packed`, which its schema check refuses', async () => {
    // The old holder's side: its request schema has no `packed`, so a request with it is malformed there.
    const old = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    const requests: Array<Record<string, unknown>> = []
    const content = files.get('small.txt') as Buffer
    await old.handle(TREE_PROTOCOL, async stream => {
      const req = await new FrameReader(stream).readFrame() as Record<string, unknown>
      requests.push(req)
      if ('packed' in req) {
        await sendFrame(stream, { v: WIRE_VERSION, t: 'error', error: new ProtocolError('malformed tree request: must NOT have additional properties').toJSON() })
      } else {
        await sendFrame(stream, { v: WIRE_VERSION, t: 'file', path: 'small.txt', size: content.byteLength, mtime: 0, length: content.byteLength })
        await send(stream, content)
        await sendFrame(stream, { v: WIRE_VERSION, t: 'file-end', path: 'small.txt', sha256: sha256(content) })
        await sendFrame(stream, { v: WIRE_VERSION, t: 'end' })
      }
      await stream.close()
    })
    try {
      const ticket = await signTicket(coordinatorKey, { v: 1, tid: 'tr_tree_old_packs', src: source, off: 0, rdr: reader.peerId.toString(), exp: Math.floor(Date.now() / 1000) + 600 })
      const got: Buffer[] = []
      await readFiles({ node: reader, peerId: old.peerId.toString(), addrs: old.getMultiaddrs().map(String), ticket, source }, [
        { path: 'small.txt', offset: 0, expect: { size: content.byteLength, mtime: 0 } }
      ], 'sha256', {
        file: async (_run, chunks) => { for await (const c of chunks) got.push(Buffer.from(c)) },
        end: async () => {},
        error: async (_path, err) => { throw err },
        files: async () => { throw new Error('a pack from a holder that has none') }
      })
      expect(Buffer.concat(got).equals(content)).toBe(true)
      expect(requests.map(r => 'packed' in r)).toEqual([true, false])
    } finally {
      await old.stop()
    }
  })

  it('ends the batch with a protocol error when a byte is flipped on the data port', async () => {
    const r = await relay(2 * MiB + 100_000)
    options.direct = { listener, port: r.port }
    const { got, error } = await read(all)
    expect(error).toMatchObject({ code: 'protocol_error' })
    expect((error as Error).message).toMatch(/failed authentication/)
    expect(got.has('sub/more.bin')).toBe(false)
  })
})
