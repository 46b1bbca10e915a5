import { createDecipheriv } from 'node:crypto'
import { createServer, connect } from 'node:net'
import type { Server, Socket } from 'node:net'
import { CanceledError, NetworkError, ProtocolError, TimeoutError, toStaccatoError } from './errors.ts'
import { SESSION_BYTES } from './direct-keys.ts'
import type { DirectKeys } from './direct-keys.ts'
import { HEADER_BYTES, HELLO_BYTES, RecordWriter, TYPE_HELLO } from './direct-records.ts'
import type { RecordReader } from './direct-records.ts'
import { DirectionKey, REKEY_BYTES, TAG_BYTES } from './record-stream.ts'

/** What a connecting reader sends first: the session id, then its sealed hello. */
const OPENING_BYTES = SESSION_BYTES + HELLO_BYTES
/** A connection that has not presented its session within this is cut (like the data stream's header timeout). */
export const HELLO_TIMEOUT_MS = 10_000
/**
 * Connections that have not presented a session yet, at most: readers connect
 * once per request (a data server takes 64 streams per connection), so more
 * than this at once is someone holding sockets open, not readers.
 */
export const MAX_UNCLAIMED = 256

export interface DirectListenerOptions {
  host: string
  port: number
  helloTimeoutMs?: number
  /** Told of every connection refused before it reached a session (logs, tests). */
  onRefused?: (err: Error) => void
}

interface Waiting {
  keys: DirectKeys
  resolve: (socket: Socket) => void
}

/**
 * The data port: accepts a TCP connection only for a session the data server
 * announced on an authenticated libp2p stream, and only from a peer that
 * proves it holds that session's key. A session is claimed once; an unknown,
 * used or unproven one, or a silent connection, is closed without a byte sent.
 */
export class DirectListener {
  private readonly server: Server
  private readonly sessions = new Map<string, Waiting>()
  private readonly sockets = new Set<Socket>()
  private unclaimed = 0
  private readonly opts: DirectListenerOptions

  private constructor (server: Server, opts: DirectListenerOptions) {
    this.server = server
    this.opts = opts
  }

  static async open (opts: DirectListenerOptions): Promise<DirectListener> {
    const server = createServer({ noDelay: true })
    const listener = new DirectListener(server, opts)
    server.on('connection', socket => { listener.accept(socket) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(opts.port, opts.host, () => { server.off('error', reject); resolve() })
    })
    return listener
  }

  get port (): number {
    const addr = this.server.address()
    return typeof addr === 'object' && addr !== null ? addr.port : 0
  }

  /** Sessions announced and not yet claimed or given up. */
  get pending (): number {
    return this.sessions.size
  }

  /** The socket of the reader that presents `keys.session`; given up (and forgotten) when `signal` aborts. */
  async expect (keys: DirectKeys, signal: AbortSignal): Promise<Socket> {
    const id = keys.session.toString('hex')
    return await new Promise<Socket>((resolve, reject) => {
      const onAbort = (): void => {
        this.sessions.delete(id)
        reject(signal.reason ?? new CanceledError('direct session given up'))
      }
      if (signal.aborted) { onAbort(); return }
      signal.addEventListener('abort', onAbort, { once: true })
      this.sessions.set(id, {
        keys,
        resolve: socket => { signal.removeEventListener('abort', onAbort); resolve(socket) }
      })
    })
  }

  /** Stops listening and cuts every connection it accepted, claimed or not: transfers on them fail, as on a stopped node. */
  async close (): Promise<void> {
    const closed = new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
    for (const socket of this.sockets) socket.destroy()
    await closed
  }

  private accept (socket: Socket): void {
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
    if (this.unclaimed >= MAX_UNCLAIMED) {
      socket.destroy()
      this.opts.onRefused?.(new ProtocolError(`direct data: more than ${MAX_UNCLAIMED} connections without a session`))
      return
    }
    this.unclaimed++
    const timeoutMs = this.opts.helloTimeoutMs ?? HELLO_TIMEOUT_MS
    const chunks: Buffer[] = []
    let got = 0
    const refuse = (err: Error): void => {
      cleanup()
      socket.destroy()
      this.opts.onRefused?.(err)
    }
    const timer = setTimeout(() => { refuse(new TimeoutError(`direct data: no session presented within ${timeoutMs} ms`)) }, timeoutMs)
    timer.unref()
    const onError = (err: Error): void => { refuse(new NetworkError(`direct data: ${err.message}`)) }
    const onClose = (): void => { refuse(new NetworkError('direct data: connection closed before it presented a session')) }
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      got += chunk.byteLength
      if (got < OPENING_BYTES) return
      // The reader sends nothing after its hello until it has the data: more is not a reader of ours.
      if (got > OPENING_BYTES) { refuse(new ProtocolError('direct data: bytes after the hello')); return }
      cleanup()
      try {
        this.claim(socket, Buffer.concat(chunks))
      } catch (err) {
        refuse(toStaccatoError(err))
      }
    }
    let cleaned = false
    const cleanup = (): void => {
      if (cleaned) return
      cleaned = true
      this.unclaimed--
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.off('error', onError)
      socket.on('error', () => {})
    }
    socket.on('data', onData)
    socket.on('close', onClose)
    socket.on('error', onError)
  }

  private claim (socket: Socket, opening: Buffer): void {
    const id = opening.subarray(0, SESSION_BYTES).toString('hex')
    const waiting = this.sessions.get(id)
    if (waiting === undefined) throw new ProtocolError('direct data: unknown or already used session')
    const header = opening.subarray(SESSION_BYTES, SESSION_BYTES + HEADER_BYTES)
    if (header.readUInt32BE(0) !== 0 || header[4] !== TYPE_HELLO) throw new ProtocolError('direct data: malformed hello')
    const key = new DirectionKey(waiting.keys.toServer, REKEY_BYTES)
    const decipher = createDecipheriv('aes-256-gcm', key.key, key.nextNonce(), { authTagLength: TAG_BYTES })
    decipher.setAAD(header)
    decipher.setAuthTag(opening.subarray(SESSION_BYTES + HEADER_BYTES))
    try {
      decipher.final()
    } catch (err) {
      // The session stays open for its real reader: a guess that fails costs the guesser its connection only.
      throw new ProtocolError('direct data: hello failed authentication', { cause: err })
    }
    this.sessions.delete(id)
    socket.pause()
    waiting.resolve(socket)
  }
}

export interface ConnectOptions {
  signal?: AbortSignal
  /** The connect itself; a port that drops SYNs would otherwise hang for the kernel's minutes. */
  timeoutMs?: number
}

export const CONNECT_TIMEOUT_MS = 5_000

/**
 * Connects to a data port and presents the session: the socket then carries
 * the server's records, which `reader` (its onread buffer given to the socket) opens.
 */
export async function connectDirect (host: string, port: number, keys: DirectKeys, reader: RecordReader, opts: ConnectOptions = {}): Promise<Socket> {
  const socket = connect({ host, port, noDelay: true, onread: reader.onread })
  const timeoutMs = opts.timeoutMs ?? CONNECT_TIMEOUT_MS
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new TimeoutError(`direct data: no connection to ${host}:${port} within ${timeoutMs} ms`)) }, timeoutMs)
      const onAbort = (): void => { reject(opts.signal?.reason) }
      const done = (): void => { clearTimeout(timer); opts.signal?.removeEventListener('abort', onAbort) }
      socket.once('connect', () => { done(); resolve() })
      socket.once('error', err => { done(); reject(new NetworkError(`direct data: cannot connect to ${host}:${port}: ${err.message}`)) })
      opts.signal?.addEventListener('abort', onAbort, { once: true })
    })
  } catch (err) {
    socket.destroy()
    throw err
  }
  reader.attach(socket)
  socket.write(keys.session)
  new RecordWriter(socket, keys.toServer).hello()
  return socket
}
