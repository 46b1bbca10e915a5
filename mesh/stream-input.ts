import type { Uint8ArrayList } from 'uint8arraylist'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import { NetworkError } from './errors.ts'

/**
 * Where a FrameReader's bytes come from: `next()` appends what arrives to the
 * reader's buffer and resolves false at the end; `consumed()` is called as the
 * reader's caller takes bytes out of it.
 */
export interface ReaderInput {
  next (): Promise<boolean>
  consumed (): void
}

// A reader pauses its stream when this much received data waits to be consumed,
// and resumes below RESUME_AT. The yamux window (≤ 16 MiB, mesh/node.ts) still in
// flight comes on top, so a slow disk holds about 24 MiB per stream, not the object.
const PAUSE_AT = 8 * 1024 * 1024
const RESUME_AT = 2 * 1024 * 1024

export function isPausableStream (source: unknown): source is Stream {
  const s = source as Partial<Stream>
  return typeof s.addEventListener === 'function' && typeof s.pause === 'function' && typeof s.resume === 'function' && typeof s.readStatus === 'string'
}

/** Any async iterable: no back-pressure beyond the iterator's own. */
export function iteratorInput (source: AsyncIterable<Uint8Array | Uint8ArrayList>, buffer: Uint8ArrayList): ReaderInput {
  const it = source[Symbol.asyncIterator]()
  let ended = false
  return {
    async next () {
      if (ended) return false
      const next = await it.next()
      if (next.done === true) {
        ended = true
        return false
      }
      buffer.append(next.value)
      return true
    },
    consumed () {}
  }
}

/**
 * A libp2p stream read through its events rather than its async iterator,
 * whose queue grows without bound when the consumer is slower than the
 * network: here the stream is paused (yamux then stops granting window) when
 * too much waits, so memory stays bounded whatever the object's size.
 */
export function streamInput (stream: Stream, buffer: Uint8ArrayList): ReaderInput {
  let received = 0
  let paused = false
  let remoteClosed = stream.remoteWriteStatus === 'closed' || stream.status === 'closed'
  let error: Error | undefined = stream.status === 'aborted' || stream.status === 'reset' ? new NetworkError(`stream was ${stream.status}`) : undefined
  let wake: (() => void) | undefined
  const notify = (): void => {
    const w = wake
    wake = undefined
    w?.()
  }
  let resuming = false
  const maybePause = (): void => {
    if (!paused && !resuming && buffer.byteLength >= PAUSE_AT && stream.readStatus === 'readable') {
      paused = true
      stream.pause()
    }
  }
  const resume = (): void => {
    paused = false
    if (stream.readStatus !== 'paused') return
    // resume() hands over what arrived while paused through 'message', and only
    // then re-opens the yamux window: pausing again inside it would leave the
    // stream marked paused with its window open, and unbounded.
    resuming = true
    try {
      stream.resume()
    } finally {
      resuming = false
    }
    maybePause()
  }

  stream.addEventListener('message', (evt: StreamMessageEvent) => {
    buffer.append(evt.data)
    received += evt.data.byteLength
    maybePause()
    notify()
  })
  stream.addEventListener('remoteCloseWrite', () => {
    remoteClosed = true
    notify()
  })
  stream.addEventListener('close', (evt: StreamCloseEvent) => {
    remoteClosed = true
    if (evt.error !== undefined) error ??= evt.error
    notify()
  })

  return {
    async next () {
      const start = received
      // Bounded: every pass either returns or waits for an event that changes `received` or the state.
      while (received === start) {
        if (error !== undefined) throw error
        if (paused) {
          resume()
          continue
        }
        // Bytes still inside the stream arrive through 'message' (after a resume, or on a microtask).
        if (remoteClosed && (stream.readBufferLength === 0 || stream.readStatus === 'closed' || stream.readStatus === 'closing')) return false
        await new Promise<void>(resolve => { wake = resolve })
      }
      return true
    },
    consumed () {
      if (paused && buffer.byteLength <= RESUME_AT) resume()
    }
  }
}
