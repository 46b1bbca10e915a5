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

/**
 * Sends bytes, then waits until the stream takes more (libp2p 3 back-pressure):
 * at most the bytes of one call wait in a stream's own buffer, whatever the peer does.
 */
export async function send (stream: Stream, bytes: Uint8Array | Uint8ArrayList, signal?: AbortSignal): Promise<void> {
  if (!stream.send(bytes)) await writable(stream, signal)
}

/**
 * Waits until the stream has handed everything queued to the muxer and the
 * connection under it takes more. Not the next 'drain' alone: yamux gives a
 * connection's drain to every stream on it, including one whose own send
 * window is empty because its reader stopped reading; waking on that queued
 * another chunk per stalled stream each time the connection drained, until
 * the source held the file once per stream (64 paused streams for a 48 MiB
 * file: 1.5 GiB queued, 1.6 GiB of RSS). Not `stream.onDrain()` either: in @libp2p/utils 7.4 it keeps
 * the promise of the first drain once resolved, so every later call returns
 * at once.
 */
async function writable (stream: Stream, signal?: AbortSignal): Promise<void> {
  // Bounded: every pass waits for an event that changes the stream's state, or ends.
  while (stream.writableNeedsDrain || stream.writeBufferLength > 0) {
    if (stream.status !== 'open' && stream.status !== 'closing') throw new NetworkError(`stream is ${stream.status}: cannot send`)
    if (stream.writeStatus === 'closed') throw new NetworkError('stream closed for writing: cannot send')
    await progress(stream, signal)
  }
}

/**
 * The next 'drain' (the window or the connection opened) or 'idle' (the
 * stream's buffer went to the muxer), or the stream's end.
 */
function progress (stream: Stream, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: unknown): void => {
      stream.removeEventListener('drain', onEvent)
      stream.removeEventListener('idle', onEvent)
      stream.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else reject(err)
    }
    // The stream's own drain handler sends from its buffer in a microtask queued
    // before ours runs; yield once more so that the loop sees its outcome.
    const onEvent = (): void => { queueMicrotask(() => { done() }) }
    const onClose = (evt: StreamCloseEvent): void => { done(evt.error ?? new NetworkError('stream closed while waiting to send')) }
    const onAbort = (): void => { done(signal?.reason) }
    if (signal?.aborted === true) { onAbort(); return }
    stream.addEventListener('drain', onEvent)
    stream.addEventListener('idle', onEvent)
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

  /**
   * The next frame parsed as JSON. The stream ending before it (the peer
   * closed or died) is a NetworkError: a caller that needs an answer must not
   * see `undefined` and report it as a malformed message.
   */
  async readFrame (): Promise<unknown> {
    const frame = await this.readFrameOrEnd()
    if (frame === undefined) throw new NetworkError('the peer closed the stream before it sent the expected message')
    return frame
  }

  /** The next frame parsed as JSON, or undefined at a clean end of stream between frames: for loops where the peer may end. */
  async readFrameOrEnd (): Promise<unknown> {
    while (this.buffer.byteLength < HEADER_BYTES) {
      if (!(await this.fill())) {
        if (this.buffer.byteLength === 0) return undefined
        throw new NetworkError('stream ended inside a frame header')
      }
    }
    const length = this.buffer.getUint32(0)
    if (length > MAX_FRAME_BYTES) throw new ProtocolError(`frame of ${length} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`)
    while (this.buffer.byteLength < HEADER_BYTES + length) {
      if (!(await this.fill())) throw new NetworkError('stream ended inside a frame')
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
