import { createCipheriv, createDecipheriv } from 'node:crypto'
import type { Socket } from 'node:net'
import { NetworkError, ProtocolError, StaccatoError, TimeoutError } from './errors.ts'
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
 * only once its tag has authenticated it. Memory: one record's ciphertext
 * (at most MAX_RECORD_BYTES) and its plaintext; the socket is read only as
 * fast as records are consumed, so a slow consumer stops the sender through TCP.
 */
export class RecordReader {
  private readonly socket: Socket
  private readonly key: DirectionKey
  private readonly chunks: Buffer[] = []
  private queued = 0
  private readonly body = Buffer.allocUnsafe(MAX_RECORD_BYTES)

  constructor (socket: Socket, key: Uint8Array, opts: ReaderOptions = {}) {
    this.socket = socket
    this.key = new DirectionKey(key, opts.rekeyBytes ?? REKEY_BYTES)
    const idle = opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS
    socket.setTimeout(idle, () => { socket.destroy(new TimeoutError(`direct data socket: nothing received for ${idle} ms`)) })
  }

  /** Bytes received and not yet opened: what the reader holds besides the record being assembled. */
  get buffered (): number {
    return this.queued
  }

  /** Every record up to and including the END record; an error on anything else. */
  async * records (): AsyncGenerator<Record> {
    const input = this.socket[Symbol.asyncIterator]() as AsyncIterator<Buffer>
    try {
      for (;;) {
        const header = await this.take(input, HEADER_BYTES, 'between records')
        const length = header.readUInt32BE(0)
        const type = header[4]
        if (length > MAX_RECORD_BYTES || (type !== TYPE_DATA && type !== TYPE_END)) {
          throw new ProtocolError(`direct data: malformed record header (length ${length}, type ${type})`)
        }
        const sealed = await this.take(input, length, 'inside a record', this.body)
        const tag = await this.take(input, TAG_BYTES, 'inside a record')
        const decipher = createDecipheriv('aes-256-gcm', this.key.key, this.key.nextNonce(), { authTagLength: TAG_BYTES })
        decipher.setAAD(header)
        decipher.setAuthTag(tag)
        const body = decipher.update(sealed)
        try {
          decipher.final()
        } catch (err) {
          throw new ProtocolError(`direct data: record ${this.key.records} failed authentication (tampered, replayed, reordered or not of this session)`, { cause: err })
        }
        this.key.advance(length)
        // The sender ends its socket after the end record: anything more is not of this session.
        if (type === TYPE_END && (this.queued > 0 || (await input.next()).done !== true)) throw new ProtocolError('direct data: bytes after the end record')
        yield { type, body }
        if (type === TYPE_END) return
      }
    } catch (err) {
      this.socket.destroy()
      throw err instanceof StaccatoError ? err : new NetworkError(`direct data socket: ${(err as Error).message}`, { cause: err })
    }
  }

  /** The next `n` bytes, copied into `into` (or a fresh buffer); the socket ending first is a truncation. */
  private async take (input: AsyncIterator<Buffer>, n: number, where: string, into?: Buffer): Promise<Buffer> {
    while (this.queued < n) {
      const next = await input.next()
      if (next.done === true) throw new NetworkError(`direct data: connection ended ${where} (truncated)`)
      this.chunks.push(next.value)
      this.queued += next.value.byteLength
    }
    const out = into?.subarray(0, n) ?? Buffer.allocUnsafe(n)
    let at = 0
    // Bounded by the chunks queued: each pass consumes one or fills `out`.
    while (at < n) {
      const first = this.chunks[0]
      const k = Math.min(first.byteLength, n - at)
      first.copy(out, at, 0, k)
      at += k
      if (k === first.byteLength) this.chunks.shift()
      else this.chunks[0] = first.subarray(k)
    }
    this.queued -= n
    return out
  }
}
