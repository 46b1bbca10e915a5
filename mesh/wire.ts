import { Uint8ArrayList } from 'uint8arraylist'
import type { Stream, StreamCloseEvent } from '@libp2p/interface'
import { ProtocolError, NetworkError } from './errors.ts'
import { isPausableStream, iteratorInput, streamInput } from './stream-input.ts'
import type { ReaderInput } from './stream-input.ts'

/** A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. */
const HEADER_BYTES = 4
/** Control messages and headers are small; anything larger is a broken or hostile peer. */
export const MAX_FRAME_BYTES = 1024 * 1024

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export function encodeFrame (message: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(message))
  if (body.byteLength > MAX_FRAME_BYTES) throw new ProtocolError(`message of ${body.byteLength} bytes exceeds the ${MAX_FRAME_BYTES}-byte frame limit`)
  const frame = new Uint8Array(HEADER_BYTES + body.byteLength)
  new DataView(frame.buffer).setUint32(0, body.byteLength)
  frame.set(body, HEADER_BYTES)
  return frame
}

/** Sends bytes, waiting for the stream's send buffer to drain when it is full (libp2p 3 back-pressure). */
export async function send (stream: Stream, bytes: Uint8Array | Uint8ArrayList, signal?: AbortSignal): Promise<void> {
  if (!stream.send(bytes)) await drained(stream, signal)
}

/**
 * Waits for the stream's 'drain' event. Not `stream.onDrain()`: in
 * @libp2p/utils 7.4 it keeps the promise of the first drain once resolved, so
 * every later call returns at once and the send buffer grows without bound
 * (the whole object: 1 GiB of RSS in a sending agent in bench:transfer).
 */
function drained (stream: Stream, signal?: AbortSignal): Promise<void> {
  if (!stream.writableNeedsDrain) return Promise.resolve()
  if (stream.status !== 'open' && stream.status !== 'closing') return Promise.reject(new NetworkError(`stream is ${stream.status}: cannot send`))
  return new Promise((resolve, reject) => {
    const done = (err?: unknown): void => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onDrain = (): void => { done() }
    const onClose = (evt: StreamCloseEvent): void => { done(evt.error ?? new NetworkError('stream closed while waiting to send')) }
    const onAbort = (): void => { done(signal?.reason) }
    if (signal?.aborted === true) { onAbort(); return }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
}

export async function sendFrame (stream: Stream, message: unknown, signal?: AbortSignal): Promise<void> {
  await send(stream, encodeFrame(message), signal)
}

/**
 * Reads JSON frames and raw byte runs from one stream. libp2p 3 streams
 * deliver chunks that do not respect frame boundaries, so this keeps the
 * unconsumed remainder between reads. A libp2p stream is read with
 * back-pressure (see stream-input.ts); any other async iterable as it comes.
 */
export class FrameReader {
  private readonly buffer = new Uint8ArrayList()
  private readonly input: ReaderInput

  constructor (stream: AsyncIterable<Uint8Array | Uint8ArrayList> | Stream) {
    this.input = isPausableStream(stream) ? streamInput(stream, this.buffer) : iteratorInput(stream, this.buffer)
  }

  private async fill (): Promise<boolean> {
    return await this.input.next()
  }

  /** The next frame parsed as JSON, or undefined at a clean end of stream between frames. */
  async readFrame (): Promise<unknown> {
    while (this.buffer.byteLength < HEADER_BYTES) {
      if (!(await this.fill())) {
        if (this.buffer.byteLength === 0) return undefined
        throw new ProtocolError('stream ended inside a frame header')
      }
    }
    const length = this.buffer.getUint32(0)
    if (length > MAX_FRAME_BYTES) throw new ProtocolError(`frame of ${length} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`)
    while (this.buffer.byteLength < HEADER_BYTES + length) {
      if (!(await this.fill())) throw new ProtocolError('stream ended inside a frame')
    }
    const body = this.buffer.subarray(HEADER_BYTES, HEADER_BYTES + length)
    this.buffer.consume(HEADER_BYTES + length)
    this.input.consumed()
    try {
      return JSON.parse(decoder.decode(body))
    } catch (err) {
      throw new ProtocolError('frame is not valid UTF-8 JSON', { cause: err })
    }
  }

  /** Yields exactly `length` raw bytes in the chunks they arrived in (no copies where possible). */
  async * readBytes (length: number): AsyncGenerator<Uint8Array> {
    let remaining = length
    while (remaining > 0) {
      if (this.buffer.byteLength === 0 && !(await this.fill())) {
        throw new NetworkError(`stream ended with ${remaining} of ${length} bytes still to come`)
      }
      for (const chunk of this.buffer) {
        const take = Math.min(chunk.byteLength, remaining)
        const piece = take === chunk.byteLength ? chunk : chunk.subarray(0, take)
        this.buffer.consume(take)
        this.input.consumed()
        remaining -= take
        yield piece
        break
      }
    }
  }
}
