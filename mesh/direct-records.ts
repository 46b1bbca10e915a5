import { createCipheriv, createDecipheriv } from 'node:crypto'
import type { Socket } from 'node:net'
import { NetworkError, ProtocolError, StaccatoError, TimeoutError } from './errors.ts'
import { noteGarbage } from './garbage.ts'
import { DirectionKey, MAX_RECORD_BYTES, REKEY_BYTES, TAG_BYTES } from './record-stream.ts'

/**
 * The records of a direct data socket: `[u32 BE plaintext length][u8 type]
 * [AES-256-GCM ciphertext][16-byte tag]`, the 5-byte header authenticated as
 * associated data, the nonce an implicit per-direction counter, the key replaced
 * every REKEY_BYTES: the same record layer as the mesh's secure channel
 * (record-stream.ts), here straight on a node:net socket with no muxer above it.
 * An END record closes the data and carries the trailer, so a socket cut short
 * of it is a truncation, never an end.
 */

export const HEADER_BYTES = 5
export const TYPE_DATA = 0
export const TYPE_END = 1
/** The reader's first record: proves to the listener that it holds this session's keys. */
export const TYPE_HELLO = 2
/** The hello on the wire: a header and a tag around an empty body. */
export const HELLO_BYTES = HEADER_BYTES + TAG_BYTES
/**
 * Sealed bytes a writer lets the socket hold before it waits for 'drain': two
 * 1 MiB records (the file plug-in's read size), enough to keep the kernel's
 * send buffer fed while the next record is sealed; memory stays bounded by it.
 */
export const WRITE_HIGH_WATER = 2 * 1024 * 1024

export interface RecordOptions {
  /** Smaller values exist for tests, which cannot send 64 GiB. */
  rekeyBytes?: number
}

export class RecordWriter {
  private readonly socket: Socket
  private readonly key: DirectionKey
  private waiting = false

  constructor (socket: Socket, key: Uint8Array, opts: RecordOptions = {}) {
    this.socket = socket
    this.key = new DirectionKey(key, opts.rekeyBytes ?? REKEY_BYTES)
  }

  /** Waiting for the socket to drain: the reader is not taking what was sent (tests of bounded memory). */
  get blocked (): boolean {
    return this.waiting
  }

  /** Seals `chunk` as one record or more, and waits while the socket holds more than WRITE_HIGH_WATER. */
  async data (chunk: Uint8Array): Promise<void> {
    for (let at = 0; at < chunk.byteLength; at += MAX_RECORD_BYTES) {
      this.seal(TYPE_DATA, chunk.subarray(at, Math.min(at + MAX_RECORD_BYTES, chunk.byteLength)))
    }
    await this.writable()
  }

  /** The last record, carrying the trailer; then the socket's write side ends. */
  async end (trailer: Uint8Array): Promise<void> {
    this.seal(TYPE_END, trailer)
    await new Promise<void>((resolve, reject) => {
      this.socket.end(() => { resolve() })
      this.socket.once('error', reject)
    })
  }

  hello (): void {
    this.seal(TYPE_HELLO, new Uint8Array(0))
  }

  private seal (type: number, body: Uint8Array): void {
    if (this.socket.destroyed) throw new NetworkError('direct data socket closed: cannot send')
    const header = Buffer.allocUnsafe(HEADER_BYTES)
    header.writeUInt32BE(body.byteLength, 0)
    header[4] = type
    const cipher = createCipheriv('aes-256-gcm', this.key.key, this.key.nextNonce(), { authTagLength: TAG_BYTES })
    cipher.setAAD(header)
    const sealed = cipher.update(body)
    cipher.final()
    // Corked: the header, body and tag leave in one writev, not three sends.
    this.socket.cork()
    this.socket.write(header)
    this.socket.write(sealed)
    this.socket.write(cipher.getAuthTag())
    this.socket.uncork()
    this.key.advance(body.byteLength)
    // Dropped once the socket has written it.
    noteGarbage(sealed.byteLength)
  }

  private async writable (): Promise<void> {
    if (this.socket.writableLength <= WRITE_HIGH_WATER) return
    this.waiting = true
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        this.waiting = false
        this.socket.off('drain', onDrain)
        this.socket.off('close', onClose)
        if (err === undefined) resolve()
        else reject(err)
      }
      const onDrain = (): void => { done() }
      const onClose = (): void => { done(new NetworkError('direct data socket closed while sending')) }
      this.socket.on('drain', onDrain)
      this.socket.on('close', onClose)
    })
  }
}

export interface Record { type: number, body: Buffer }

export interface ReaderOptions extends RecordOptions {
  /** A peer that sends nothing for this long is cut (the socket's idle timeout). */
  idleTimeoutMs?: number
}

/** Default idle limit: a sender that stalls for a minute mid-transfer is gone, not slow. */
export const IDLE_TIMEOUT_MS = 60_000

/**
 * Opens the records a socket carries, in order, releasing a record's plaintext
 * only once its tag has authenticated it. The socket reads into buffers of
 * this reader's (`onread`, given to net.connect): a record's body straight
 * into the one body buffer, its tag and the next header into a small one, so
 * no byte is copied between the socket and the decipher and a 1 MiB record
 * costs a few reads rather than one per 64 KiB. Memory: one record's ciphertext (at most
 * MAX_RECORD_BYTES) and the opened records not yet consumed; the socket is
 * paused while one waits, so a slow consumer stops the sender through TCP.
 */
export class RecordReader {
  private readonly key: DirectionKey
  private readonly body = Buffer.allocUnsafe(MAX_RECORD_BYTES)
  private readonly header = Buffer.allocUnsafe(HEADER_BYTES)
  private readonly tag = Buffer.allocUnsafe(TAG_BYTES)
  /** Where a read that is not of a body goes: a tag and the header after it. */
  private readonly scratch = Buffer.allocUnsafe(TAG_BYTES + HEADER_BYTES)
  /** The part of `body` the socket was last told to read into. */
  private target?: Buffer
  private at: 'header' | 'body' | 'tag' = 'header'
  private filled = 0
  private length = 0
  private readonly queue: Record[] = []
  private queuedBytes = 0
  private endRecord = false
  private ended = false
  private failure?: Error
  private wake?: () => void
  /** The last read was refused (records wait): the socket reads nothing until records() asks again. */
  private stopped = false
  private socket?: Socket
  private readonly idleTimeoutMs: number
  /** For net.connect: the socket reads into `buffer` and hands each read to `callback`. */
  readonly onread: { buffer: () => Buffer, callback: (n: number, buf: Buffer) => boolean }

  constructor (key: Uint8Array, opts: ReaderOptions = {}) {
    this.key = new DirectionKey(key, opts.rekeyBytes ?? REKEY_BYTES)
    this.idleTimeoutMs = opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS
    // node:net asks for the next buffer after each read, once the callback has consumed it.
    this.onread = { buffer: () => this.nextBuffer(), callback: (n, buf) => this.feed(buf, n) }
  }

  /** Bytes received and not yet consumed: opened records waiting and the record being assembled. */
  get buffered (): number {
    return this.queuedBytes + (this.at === 'body' ? this.filled : 0)
  }

  /** The socket `onread` was given to: its end, errors and idleness. */
  attach (socket: Socket): void {
    this.socket = socket
    const idle = this.idleTimeoutMs
    socket.setTimeout(idle, () => { socket.destroy(new TimeoutError(`direct data socket: nothing received for ${idle} ms`)) })
    socket.on('end', () => {
      this.ended = true
      if (!this.endRecord) {
        const inside = this.at !== 'header' || this.filled > 0
        this.fail(new NetworkError(`direct data: connection ended ${inside ? 'inside a record' : 'between records'} (truncated)`))
      }
      this.notify()
    })
    socket.on('error', err => { this.fail(err instanceof StaccatoError ? err : new NetworkError(`direct data socket: ${err.message}`, { cause: err })) })
    socket.on('close', () => {
      if (!this.ended) this.fail(new NetworkError('direct data: connection closed before the end record (truncated)'))
      this.notify()
    })
  }

  /** Every record up to and including the END record (passed on once the socket ended cleanly after it); an error on anything else. */
  async * records (): AsyncGenerator<Record> {
    try {
      // Bounded by the records the peer sends: each pass consumes one or waits for the socket to change.
      for (;;) {
        const record = this.queue[0]
        if (record !== undefined && (record.type !== TYPE_END || this.ended || this.failure !== undefined)) {
          if (record.type === TYPE_END && this.failure !== undefined) throw this.failure
          this.queue.shift()
          this.queuedBytes -= record.body.byteLength
          // The next record is read and opened while the consumer works on this one (hashes it, writes it):
          // still at most one waits in the queue.
          if (this.queue.length === 0) this.resumeReads()
          yield record
          if (record.type === TYPE_END) return
          continue
        }
        if (this.failure !== undefined) throw this.failure
        // Also with the end record waiting: the socket's end, which passes it on, is read only then.
        this.resumeReads()
        await new Promise<void>(resolve => { this.wake = resolve })
      }
    } finally {
      this.socket?.destroy()
    }
  }

  private resumeReads (): void {
    if (!this.stopped || this.socket === undefined) return
    // An onread callback's `false` stopped the handle's reads without pausing the stream: read(0) starts them again.
    this.stopped = false
    this.socket.read(0)
  }

  private notify (): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  private fail (err: Error): void {
    this.failure ??= err
    this.socket?.destroy()
    this.notify()
  }

  /** One socket read: consumed at once (copied into the record being assembled); false pauses the socket. */
  private feed (buf: Buffer, n: number): boolean {
    if (this.failure !== undefined) return false
    try {
      this.consume(buf, n)
    } catch (err) {
      this.fail(err as Error)
      return false
    }
    this.notify()
    this.stopped = this.queue.length > 0
    return !this.stopped
  }

  /** The next read's buffer: the rest of the body being assembled, else what completes the header or the tag and the header after it. */
  private nextBuffer (): Buffer {
    if (this.at === 'body') {
      this.target = this.body.subarray(this.filled, this.length)
      return this.target
    }
    this.target = undefined
    return this.scratch.subarray(0, this.at === 'header' ? HEADER_BYTES - this.filled : TAG_BYTES - this.filled + HEADER_BYTES)
  }

  private consume (buf: Buffer, n: number): void {
    if (buf === this.target && this.at === 'body') {
      // Read in place: the bytes are already where the decipher takes them.
      this.target = undefined
      this.filled += n
      if (this.filled < this.length) return
      this.filled = 0
      this.at = 'tag'
      return
    }
    let at = 0
    // Bounded: each pass copies at least one byte or completes a part of a record.
    while (at < n) {
      if (this.endRecord) throw new ProtocolError('direct data: bytes after the end record')
      const into = this.at === 'header' ? this.header : this.at === 'tag' ? this.tag : this.body
      const need = this.at === 'header' ? HEADER_BYTES : this.at === 'tag' ? TAG_BYTES : this.length
      const k = Math.min(need - this.filled, n - at)
      buf.copy(into, this.filled, at, at + k)
      this.filled += k
      at += k
      if (this.filled < need) return
      this.filled = 0
      if (this.at === 'header') {
        this.length = this.header.readUInt32BE(0)
        const type = this.header[4]
        if (this.length > MAX_RECORD_BYTES || (type !== TYPE_DATA && type !== TYPE_END)) {
          throw new ProtocolError(`direct data: malformed record header (length ${this.length}, type ${type})`)
        }
        this.at = this.length > 0 ? 'body' : 'tag'
      } else if (this.at === 'body') {
        this.at = 'tag'
      } else {
        this.open()
        this.at = 'header'
      }
    }
  }

  private open (): void {
    const type = this.header[4]
    const decipher = createDecipheriv('aes-256-gcm', this.key.key, this.key.nextNonce(), { authTagLength: TAG_BYTES })
    decipher.setAAD(this.header)
    decipher.setAuthTag(this.tag)
    const body = decipher.update(this.body.subarray(0, this.length))
    try {
      decipher.final()
    } catch (err) {
      throw new ProtocolError(`direct data: record ${this.key.records} failed authentication (tampered, replayed, reordered or not of this session)`, { cause: err })
    }
    this.key.advance(this.length)
    // Dropped once the consumer is done with it (a chunk it keeps stays alive: it is only counted).
    noteGarbage(body.byteLength)
    if (type === TYPE_END) this.endRecord = true
    this.queue.push({ type, body })
    this.queuedBytes += body.byteLength
  }
}
