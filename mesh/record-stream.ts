import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync } from 'node:crypto'
import type { DecipherGCM, KeyObject } from 'node:crypto'
import type { AbortOptions, MessageStream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import { AbstractMessageStream } from '@libp2p/utils'
import type { SendResult } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { NetworkError, ProtocolError } from './errors.ts'
import { noteGarbage } from './garbage.ts'

/**
 * The transport phase of the /staccato/noise-aesgcm/1 channel: records of
 * `[u32 BE plaintext length][u8 type][AES-256-GCM ciphertext][16-byte tag]`,
 * the 5-byte header authenticated as associated data. The nonce is an implicit
 * per-direction counter (4 zero bytes, then the record number as u64 BE, as the
 * Noise spec lays out AESGCM nonces), so a record replayed, reordered, dropped
 * or moved from another connection fails its tag like a tampered one.
 * docs/security.md ("Mesh: the AES-GCM record layer") says why this is sound.
 */

const HEADER_BYTES = 5
export const TAG_BYTES = 16
const TYPE_DATA = 0
// Sent by close(): a connection that ends without one was cut by someone else.
const TYPE_CLOSE = 1
/** A record's plaintext at most: big enough that per-record costs vanish, small enough to buffer. */
export const MAX_RECORD_BYTES = 4 * 1024 * 1024
/**
 * A direction's key is replaced after this many plaintext bytes. 2^36 bytes are
 * 2^32 AES blocks, for which GCM's confidentiality bound (blocks² / 2^128) is 2^-64.
 */
export const REKEY_BYTES = 2 ** 36
// Nonces stay unique under every key long before this (the counter never
// restarts); it only keeps the counter an exact JS number.
const MAX_RECORDS = 2 ** 52
const REKEY_INFO = Buffer.from('staccato aesgcm rekey')

export interface RecordKeys {
  /** 32-byte key for what this end sends (one half of Noise's split()). */
  send: Uint8Array
  /** 32-byte key for what this end receives. */
  receive: Uint8Array
}

export interface RecordStreamOptions {
  /** Smaller values exist for tests, which cannot send 64 GiB. */
  rekeyBytes?: number
  /** Told of the error that closed the channel (tests and logs). */
  onError?: (err: Error) => void
}

/** One direction's key, counter and bytes sealed under the current key (also the direct data socket's, direct-records.ts). */
export class DirectionKey {
  private raw: Buffer
  key: KeyObject
  records = 0
  private sinceRekey = 0
  private readonly nonce = Buffer.alloc(12)
  private readonly rekeyBytes: number

  constructor (raw: Uint8Array, rekeyBytes: number) {
    this.raw = Buffer.from(raw)
    this.key = createSecretKey(this.raw)
    this.rekeyBytes = rekeyBytes
  }

  /** The nonce of the next record; the buffer is reused, which createCipheriv allows (it copies the IV). */
  nextNonce (): Buffer {
    if (this.records >= MAX_RECORDS) throw new NetworkError('secure channel: record counter exhausted, reconnect')
    this.nonce.writeUInt32BE(Math.floor(this.records / 2 ** 32), 4)
    this.nonce.writeUInt32BE(this.records >>> 0, 8)
    return this.nonce
  }

  /** After each record: both ends count the same lengths, so they rekey at the same record. */
  advance (plaintextBytes: number): void {
    this.records++
    this.sinceRekey += plaintextBytes + TAG_BYTES
    if (this.sinceRekey < this.rekeyBytes) return
    this.raw = Buffer.from(hkdfSync('sha256', this.raw, Buffer.alloc(0), REKEY_INFO, 32))
    this.key = createSecretKey(this.raw)
    this.sinceRekey = 0
  }
}

type ReadState = { at: 'header' } | { at: 'body', type: number, length: number, left: number, header: Buffer, plain: Buffer[] } | { at: 'tag', type: number, length: number, header: Buffer, plain: Buffer[] }

export class RecordStream extends AbstractMessageStream {
  private readonly stream: MessageStream
  private readonly sending: DirectionKey
  private readonly receiving: DirectionKey
  private readonly onError?: (err: Error) => void
  private readonly pending = new Uint8ArrayList()
  private state: ReadState = { at: 'header' }
  private decipher?: DecipherGCM
  private closeReceived = false
  private closingLocally = false

  constructor (stream: MessageStream, keys: RecordKeys, opts: RecordStreamOptions = {}) {
    super({
      log: stream.log,
      inactivityTimeout: stream.inactivityTimeout,
      maxReadBufferLength: stream.maxReadBufferLength,
      direction: stream.direction
    })
    this.stream = stream
    const rekeyBytes = opts.rekeyBytes ?? REKEY_BYTES
    this.sending = new DirectionKey(keys.send, rekeyBytes)
    this.receiving = new DirectionKey(keys.receive, rekeyBytes)
    this.onError = opts.onError
    stream.addEventListener('message', (evt: StreamMessageEvent) => {
      try {
        this.receive(evt.data)
      } catch (err) {
        this.fail(err as Error)
      }
    })
    stream.addEventListener('close', (evt: StreamCloseEvent) => {
      if (evt.error != null) {
        if (evt.local === true) this.abort(evt.error)
        else this.onRemoteReset()
      } else if (this.endedCleanly()) {
        this.onTransportClosed()
      }
    })
    stream.addEventListener('drain', () => { this.safeDispatchEvent('drain') })
    stream.addEventListener('remoteCloseWrite', () => {
      if (this.endedCleanly() && !this.closeReceived) this.onRemoteCloseWrite()
    })
  }

  /**
   * The transport ended. Fine after a close record or our own close(); anything
   * else is a truncation, which the muxer above must not mistake for an end.
   */
  private endedCleanly (): boolean {
    if (this.closeReceived || this.closingLocally) return true
    const inside = this.state.at !== 'header' || this.pending.byteLength > 0
    // A network error, not a protocol one: a peer that crashed looks exactly like this.
    this.fail(new NetworkError(inside
      ? 'secure channel: connection ended inside a record (truncated)'
      : 'secure channel: connection ended without a close record (truncated)'))
    return false
  }

  private fail (err: Error): void {
    if (this.status === 'aborted' || this.status === 'reset' || this.status === 'closed') return
    this.onError?.(err)
    this.abort(err)
  }

  private receive (data: Uint8Array | Uint8ArrayList): void {
    if (this.status !== 'open') return
    this.pending.append(data)
    // Each pass consumes a header, some body bytes or a tag; it stops when the
    // buffer runs short, so the loop ends within the bytes just received.
    for (;;) {
      const state = this.state
      if (state.at === 'header') {
        if (this.pending.byteLength < HEADER_BYTES) return
        if (this.closeReceived) throw new ProtocolError('secure channel: data after the close record')
        const header = Buffer.from(this.pending.subarray(0, HEADER_BYTES))
        this.pending.consume(HEADER_BYTES)
        const length = header.readUInt32BE(0)
        const type = header[4]
        if (length > MAX_RECORD_BYTES || (type !== TYPE_DATA && type !== TYPE_CLOSE) || (type === TYPE_CLOSE && length !== 0)) {
          throw new ProtocolError(`secure channel: malformed record header (length ${length}, type ${type})`)
        }
        this.decipher = createDecipheriv('aes-256-gcm', this.receiving.key, this.receiving.nextNonce(), { authTagLength: TAG_BYTES })
        this.decipher.setAAD(header)
        this.state = { at: 'body', type, length, left: length, header, plain: [] }
      } else if (state.at === 'body') {
        const n = Math.min(state.left, this.pending.byteLength)
        if (n === 0 && state.left > 0) return
        // Deciphered pieces are held back until the tag authenticates the whole record.
        for (const part of this.pending.sublist(0, n)) state.plain.push(this.decipherer().update(part))
        this.pending.consume(n)
        state.left -= n
        if (state.left > 0) return
        this.state = { at: 'tag', type: state.type, length: state.length, header: state.header, plain: state.plain }
      } else {
        if (this.pending.byteLength < TAG_BYTES) return
        const decipher = this.decipherer()
        decipher.setAuthTag(this.pending.subarray(0, TAG_BYTES))
        this.pending.consume(TAG_BYTES)
        try {
          decipher.final()
        } catch (err) {
          throw new ProtocolError(`secure channel: record ${this.receiving.records} failed authentication (tampered, replayed, reordered or not of this connection)`, { cause: err })
        }
        this.decipher = undefined
        this.receiving.advance(state.length)
        this.state = { at: 'header' }
        if (state.type === TYPE_CLOSE) {
          this.closeReceived = true
          this.onRemoteCloseWrite()
        } else if (state.length > 0) {
          this.onData(state.plain.length === 1 ? state.plain[0] : new Uint8ArrayList(...state.plain))
          // Fresh buffers from the decipher, garbage once the muxer and its reader are done with them.
          noteGarbage(state.length)
        }
      }
    }
  }

  private decipherer (): DecipherGCM {
    if (this.decipher === undefined) throw new Error('secure channel: no record in progress')
    return this.decipher
  }

  /** Seals `body` (at most a record's worth) as one record onto `out`. */
  private seal (type: number, body: Uint8ArrayList, out: Buffer[]): void {
    const header = Buffer.allocUnsafe(HEADER_BYTES)
    header.writeUInt32BE(body.byteLength, 0)
    header[4] = type
    const cipher = createCipheriv('aes-256-gcm', this.sending.key, this.sending.nextNonce(), { authTagLength: TAG_BYTES })
    cipher.setAAD(header)
    out.push(header)
    // Piece by piece rather than concatenated first: a copy of every byte fewer;
    // the muxer's pieces are its frame headers and the application's buffers.
    for (const part of body) out.push(cipher.update(part))
    cipher.final()
    out.push(cipher.getAuthTag())
    this.sending.advance(body.byteLength)
    // Fresh buffers from the cipher, garbage once the transport wrote them.
    noteGarbage(body.byteLength)
  }

  sendData (data: Uint8ArrayList): SendResult {
    const out: Buffer[] = []
    for (let offset = 0; offset < data.byteLength; offset += MAX_RECORD_BYTES) {
      this.seal(TYPE_DATA, data.sublist(offset, Math.min(offset + MAX_RECORD_BYTES, data.byteLength)), out)
    }
    return { sentBytes: data.byteLength, canSendMore: this.stream.send(coalesceSmall(out)) }
  }

  async close (options?: AbortOptions): Promise<void> {
    if (!this.closingLocally && this.stream.status === 'open') {
      this.closingLocally = true
      const out: Buffer[] = []
      this.seal(TYPE_CLOSE, new Uint8ArrayList(), out)
      this.stream.send(Buffer.concat(out))
    }
    this.closingLocally = true
    await this.stream.close(options)
  }

  sendPause (): void {
    this.stream.pause()
  }

  sendResume (): void {
    this.stream.resume()
  }

  sendReset (err: Error): void {
    this.stream.abort(err)
  }
}

const SMALL_PIECE = 16 * 1024

/**
 * Joins runs of small pieces (record headers, tags, sealed muxer frame headers):
 * the transport writes each piece to the socket on its own, so three tiny
 * writes per record would cost more than copying a few bytes.
 */
function coalesceSmall (pieces: Buffer[]): Uint8ArrayList {
  const out = new Uint8ArrayList()
  let run: Buffer[] = []
  for (const piece of pieces) {
    if (piece.byteLength < SMALL_PIECE) {
      run.push(piece)
      continue
    }
    if (run.length > 0) out.append(run.length === 1 ? run[0] : Buffer.concat(run))
    run = []
    out.append(piece)
  }
  if (run.length > 0) out.append(run.length === 1 ? run[0] : Buffer.concat(run))
  return out
}
