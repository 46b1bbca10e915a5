import { randomBytes } from 'node:crypto'
import { connect, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  DirectListener, MAX_RECORD_BYTES, MAX_UNCLAIMED, NetworkError, ProtocolError, RecordReader, RecordWriter, TYPE_END, TimeoutError, WRITE_HIGH_WATER,
  connectDirect, deriveKeys, ephemeral, newSession
} from '../../mesh/index.ts'
import type { DirectKeys } from '../../mesh/index.ts'

/**
 * The direct data socket (mesh/direct-*.ts) under attack, on real loopback
 * sockets: a man in the middle (a TCP proxy the test controls) tampers with,
 * replays, reorders or cuts the server's records; strangers connect with
 * unknown, used or unproven sessions, or say nothing. Every case ends in a
 * named error and no unauthenticated byte reaches the reader.
 */

const HEADER = 5
const TAG = 16

/** Both ends' keys for one session, as the data server and reader derive them. */
function keysFor (): { server: DirectKeys, reader: DirectKeys } {
  const s = ephemeral()
  const r = ephemeral()
  const session = newSession()
  const ctx = { serverPeer: 'server-peer', readerPeer: 'reader-peer', serverPub: s.pub, readerPub: r.pub, session }
  return { server: deriveKeys(s.privateKey, r.pub, ctx), reader: deriveKeys(r.privateKey, s.pub, ctx) }
}

/** Splits the server's byte stream into its records (header, body, tag), as a man in the middle can. */
function splitRecords (bytes: Buffer): Buffer[] {
  const out: Buffer[] = []
  // Bounded: each pass consumes one whole record.
  for (let at = 0; at + HEADER <= bytes.byteLength;) {
    const end = at + HEADER + bytes.readUInt32BE(at) + TAG
    out.push(bytes.subarray(at, end))
    at = end
  }
  return out
}

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function listen (opts: { helloTimeoutMs?: number } = {}): Promise<{ listener: DirectListener, refused: Error[] }> {
  const refused: Error[] = []
  const listener = await DirectListener.open({ host: '127.0.0.1', port: 0, onRefused: err => refused.push(err), ...opts })
  cleanups.push(async () => { await listener.close() })
  return { listener, refused }
}

/**
 * A proxy between reader and listener: the reader's bytes pass as they are;
 * the server's are held until it ends, then `rewrite` decides what the reader
 * gets, and whether the proxy ends the connection cleanly or cuts it.
 */
async function proxy (port: number, rewrite: (records: Buffer[]) => { send: Buffer[], cut?: boolean }): Promise<number> {
  const server: Server = createServer(client => {
    const upstream = connect({ host: '127.0.0.1', port })
    const held: Buffer[] = []
    client.on('data', d => upstream.write(d))
    upstream.on('data', d => held.push(d))
    upstream.on('end', () => {
      const { send, cut } = rewrite(splitRecords(Buffer.concat(held)))
      for (const r of send) client.write(r)
      if (cut === true) client.end(() => { client.destroy() })
      else client.end()
    })
    client.on('error', () => {})
    upstream.on('error', () => {})
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(async () => { await new Promise<void>(resolve => server.close(() => { resolve() })) })
  const addr = server.address()
  if (addr === null || typeof addr !== 'object') throw new Error('no proxy port')
  return addr.port
}

/** The server's side: three data records and the end record carrying a trailer. */
async function serve (listener: DirectListener, keys: DirectKeys, bodies: Buffer[]): Promise<void> {
  const socket = await listener.expect(keys, AbortSignal.timeout(30_000))
  const writer = new RecordWriter(socket, keys.toReader)
  for (const b of bodies) await writer.data(b)
  await writer.end(Buffer.from('{"ok":true}'))
}

/** The reader's side: what it accepted before the records ended or failed, and how they ended. */
async function read (port: number, keys: DirectKeys, opts: { idleTimeoutMs?: number } = {}): Promise<{ bodies: Buffer[], trailer?: string, error?: unknown }> {
  const bodies: Buffer[] = []
  try {
    const reader = new RecordReader(keys.toReader, opts)
    await connectDirect('127.0.0.1', port, keys, reader)
    for await (const r of reader.records()) {
      if (r.type === TYPE_END) return { bodies, trailer: r.body.toString() }
      bodies.push(Buffer.from(r.body))
    }
    return { bodies }
  } catch (error) {
    return { bodies, error }
  }
}

const bodies = [randomBytes(1000), randomBytes(70_000), randomBytes(5)]

describe('direct data socket: records', () => {
  it('carries the records in order and the trailer in the end record (the baseline of the attacks below)', async () => {
    const { listener } = await listen()
    const keys = keysFor()
    const served = serve(listener, keys.server, bodies)
    const got = await read(listener.port, keys.reader)
    await served
    expect(got.error).toBeUndefined()
    expect(got.bodies).toEqual(bodies)
    expect(got.trailer).toBe('{"ok":true}')
  })

  const attacks: Array<[string, (r: Buffer[]) => { send: Buffer[], cut?: boolean }, number, new (...a: never[]) => Error, RegExp]> = [
    ['a tampered record', r => { const t = Buffer.from(r[1]); t[HEADER + 10] ^= 1; return { send: [r[0], t, ...r.slice(2)] } }, 1, ProtocolError, /record 1 failed authentication/],
    ['a tampered length in a header', r => { const t = Buffer.from(r[2]); t.writeUInt32BE(4, 0); return { send: [r[0], r[1], t, ...r.slice(3)] } }, 2, ProtocolError, /failed authentication/],
    ['a replayed record', r => ({ send: [r[0], r[0], ...r.slice(1)] }), 1, ProtocolError, /record 1 failed authentication/],
    ['reordered records', r => ({ send: [r[1], r[0], ...r.slice(2)] }), 0, ProtocolError, /record 0 failed authentication/],
    ['a dropped record', r => ({ send: [r[0], ...r.slice(2)] }), 1, ProtocolError, /record 1 failed authentication/],
    ['a stream cut before the end record', r => ({ send: r.slice(0, -1), cut: true }), 3, NetworkError, /connection ended between records \(truncated\)/],
    ['a stream cut inside a record', r => ({ send: [r[0], r[1].subarray(0, 100)], cut: true }), 1, NetworkError, /connection ended inside a record \(truncated\)/],
    ['bytes after the end record', r => ({ send: [...r, r[0]] }), 3, ProtocolError, /bytes after the end record/]
  ]
  for (const [name, rewrite, accepted, type, message] of attacks) {
    it(`ends on ${name} with a named error, having passed on only the records before it`, async () => {
      const { listener } = await listen()
      const keys = keysFor()
      const served = serve(listener, keys.server, bodies).catch(() => {})
      const port = await proxy(listener.port, rewrite)
      const got = await read(port, keys.reader)
      await served
      expect(got.error).toBeInstanceOf(type)
      expect((got.error as Error).message).toMatch(message)
      expect(got.trailer).toBeUndefined()
      expect(got.bodies).toEqual(bodies.slice(0, accepted))
    })
  }

  it('cuts a server that sends nothing with a timeout error (the reader\'s idle limit)', async () => {
    const { listener } = await listen()
    const keys = keysFor()
    const held = listener.expect(keys.server, AbortSignal.timeout(30_000))
    const got = await read(listener.port, keys.reader, { idleTimeoutMs: 200 })
    ;(await held).destroy()
    expect(got.error).toBeInstanceOf(TimeoutError)
    expect(got.bodies).toEqual([])
  })

  it('holds bounded memory with a reader that stops reading: the writer waits, its socket holds at most its high-water mark and a record', async () => {
    const { listener } = await listen()
    const keys = keysFor()
    const reader = new RecordReader(keys.reader.toReader)
    const socket = await connectDirect('127.0.0.1', listener.port, keys.reader, reader)
    cleanups.push(() => { socket.destroy() })
    const server = await listener.expect(keys.server, AbortSignal.timeout(30_000))
    const writer = new RecordWriter(server, keys.server.toReader)
    const chunk = Buffer.alloc(1024 * 1024, 1)
    const total = 256
    let sealed = 0
    // Bounded: 256 MiB at most; stops as soon as the writer waits.
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        await writer.data(chunk)
        sealed++
      }
    })().catch(() => {})
    const records = reader.records()
    const first = await records.next()
    expect(first.value?.body.byteLength).toBe(chunk.byteLength)
    // The reader takes nothing more: wait until the writer is held back.
    await expect.poll(() => writer.blocked, { timeout: 60_000, interval: 20 }).toBe(true)
    expect(server.writableLength).toBeLessThanOrEqual(WRITE_HIGH_WATER + MAX_RECORD_BYTES + 2 * (HEADER + TAG))
    expect(reader.buffered).toBeLessThanOrEqual(MAX_RECORD_BYTES + HEADER + TAG)
    expect(sealed).toBeLessThan(total)
    await records.return(undefined)
    server.destroy()
    await sending
  })
})

describe('direct data socket: the listener admits a session once, and only its key holder', () => {
  it('refuses an unknown session, and the real reader still gets in after it', async () => {
    const { listener, refused } = await listen()
    const keys = keysFor()
    const stranger = { ...keys.reader, session: newSession() }
    const served = serve(listener, keys.server, bodies)
    const bad = await read(listener.port, stranger)
    expect(bad.error).toBeInstanceOf(NetworkError)
    await expect.poll(() => refused.length).toBe(1)
    expect(refused[0]).toBeInstanceOf(ProtocolError)
    expect(refused[0].message).toMatch(/unknown or already used session/)
    const good = await read(listener.port, keys.reader)
    await served
    expect(good.bodies).toEqual(bodies)
  })

  it('refuses a hello not sealed with the session\'s key (the id alone is not enough), and keeps the session for its reader', async () => {
    const { listener, refused } = await listen()
    const keys = keysFor()
    const forger = { ...keysFor().reader, session: keys.reader.session }
    const served = serve(listener, keys.server, bodies)
    const bad = await read(listener.port, forger)
    expect(bad.error).toBeInstanceOf(NetworkError)
    await expect.poll(() => refused.length).toBe(1)
    expect(refused[0].message).toMatch(/hello failed authentication/)
    const good = await read(listener.port, keys.reader)
    await served
    expect(good.bodies).toEqual(bodies)
  })

  it('refuses a session used once already', async () => {
    const { listener, refused } = await listen()
    const keys = keysFor()
    const served = serve(listener, keys.server, bodies)
    const first = await read(listener.port, keys.reader)
    await served
    expect(first.bodies).toEqual(bodies)
    const again = await read(listener.port, keys.reader)
    expect(again.error).toBeInstanceOf(NetworkError)
    await expect.poll(() => refused.length).toBe(1)
    expect(refused[0].message).toMatch(/unknown or already used session/)
    expect(listener.pending).toBe(0)
  })

  it('cuts a connection that never presents a session, with a timeout error', async () => {
    const { listener, refused } = await listen({ helloTimeoutMs: 200 })
    const silent = connect({ host: '127.0.0.1', port: listener.port })
    silent.on('error', () => {})
    await new Promise(resolve => silent.once('close', resolve))
    expect(refused).toHaveLength(1)
    expect(refused[0]).toBeInstanceOf(TimeoutError)
  })

  it(`cuts connections beyond ${MAX_UNCLAIMED} that have not presented a session`, async () => {
    const { listener, refused } = await listen()
    const sockets: Socket[] = []
    cleanups.push(() => { for (const s of sockets) s.destroy() })
    for (let i = 0; i <= MAX_UNCLAIMED; i++) {
      const s = connect({ host: '127.0.0.1', port: listener.port })
      s.on('error', () => {})
      sockets.push(s)
    }
    await expect.poll(() => refused.length, { timeout: 30_000 }).toBe(1)
    expect(refused[0].message).toMatch(/connections without a session/)
  })

  it('forgets a session its server gave up on', async () => {
    const { listener } = await listen()
    const keys = keysFor()
    const giveUp = new AbortController()
    const waiting = listener.expect(keys.server, giveUp.signal)
    expect(listener.pending).toBe(1)
    giveUp.abort(new TimeoutError('given up'))
    await expect(waiting).rejects.toBeInstanceOf(TimeoutError)
    expect(listener.pending).toBe(0)
  })
})
