import type { Stream } from '@libp2p/interface'
import { ControlEnvelope, ControlMethods, WIRE_VERSION, decode, isControlMethod } from './messages.ts'
import type { ControlMethod, ControlParams } from './messages.ts'
import { FrameReader, encodeFrame, send } from './wire.ts'
import { NetworkError, ProtocolError, TimeoutError, fromErrorInfo, toStaccatoError } from './errors.ts'
import type { StaccatoError } from './errors.ts'

export interface ControlHandlers {
  call?: <M extends ControlMethod>(method: M, params: ControlParams<M>) => Promise<unknown>
  cast?: <M extends ControlMethod>(method: M, params: ControlParams<M>) => void
  /** A call handler failed with an error nothing names (a bug): the peer gets `internal`, this side's log gets the stack. */
  onInternalError?: (method: ControlMethod, err: StaccatoError) => void
}

interface Pending { resolve: (v: unknown) => void, reject: (e: Error) => void, timer: NodeJS.Timeout }

// Calls from the peer being answered at once. Beyond this a call is answered
// at once with a retryable error, not run: a peer cannot pile up handlers
// (each holding its parameters, up to a frame of 1 MiB) by calling faster than
// they finish. The read loop itself never stops, so replies to our own calls
// always get through (a handler may wait on one).
export const MAX_CALLS_IN_FLIGHT = 256
// Bytes of our messages the peer has not taken yet (beyond its yamux window).
// Control messages are small; a peer this far behind does not read at all, and
// waiting for it would queue a reply per call it sends without end.
export const MAX_UNSENT_BYTES = 4 * 1024 * 1024

/**
 * Request/reply (`call`) and fire-and-forget (`cast`) messages over one
 * long-lived /staccato/control/1 stream, in both directions (the Trove idea).
 * A malformed message from the peer ends the channel with a ProtocolError;
 * the process and every other channel carry on.
 */
export class ControlChannel {
  readonly stream: Stream
  readonly closed: Promise<Error | undefined>
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private inFlight = 0
  private readonly handlers: ControlHandlers

  constructor (stream: Stream, handlers: ControlHandlers) {
    this.stream = stream
    this.handlers = handlers
    this.closed = this.readLoop()
  }

  async call<M extends ControlMethod> (method: M, params: ControlParams<M>, timeoutMs = 30_000): Promise<unknown> {
    const id = this.nextId++
    const result = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new TimeoutError(`no reply to ${method} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { resolve, reject, timer })
    })
    try {
      await this.write({ v: WIRE_VERSION, kind: 'call', id, method, params })
    } catch (err) {
      this.settle(id, undefined, toStaccatoError(err))
    }
    return await result
  }

  async cast<M extends ControlMethod> (method: M, params: ControlParams<M>): Promise<void> {
    await this.write({ v: WIRE_VERSION, kind: 'cast', method, params })
  }

  close (err?: Error): void {
    if (err !== undefined) this.stream.abort(err)
    else void this.stream.close().catch(() => { this.stream.abort(new NetworkError('control channel closed')) })
  }

  /** Sends one message, or ends the channel when the peer has left too much of ours unread. */
  private async write (message: unknown): Promise<void> {
    const frame = encodeFrame(message)
    if (this.stream.writeBufferLength + frame.byteLength > MAX_UNSENT_BYTES) {
      const err = new ProtocolError(`the peer does not read: ${this.stream.writeBufferLength} bytes wait to be sent to it`)
      this.close(err)
      throw err
    }
    await send(this.stream, frame)
  }

  private settle (id: number, value: unknown, err?: Error): void {
    const p = this.pending.get(id)
    if (p === undefined) return
    this.pending.delete(id)
    clearTimeout(p.timer)
    if (err !== undefined) p.reject(err)
    else p.resolve(value)
  }

  private async readLoop (): Promise<Error | undefined> {
    const reader = new FrameReader(this.stream)
    let failure: Error | undefined
    try {
      while (true) {
        const raw = await reader.readFrameOrEnd()
        if (raw === undefined) {
          // The peer closed its side: close ours, so that both read loops end.
          await this.stream.close().catch(() => {})
          break
        }
        const msg = decode(ControlEnvelope, raw, 'control message')
        if (msg.kind === 'reply') {
          this.settle(msg.id, msg.result, msg.error !== undefined ? fromErrorInfo(msg.error) : undefined)
          continue
        }
        if (!isControlMethod(msg.method)) throw new ProtocolError(`unknown control method '${msg.method}'`)
        const params = decode(ControlMethods[msg.method], msg.params, `${msg.method} parameters`)
        if (msg.kind === 'cast') {
          this.handlers.cast?.(msg.method, params)
        } else if (this.inFlight >= MAX_CALLS_IN_FLIGHT) {
          void this.refuse(msg.id, new NetworkError(`busy: ${MAX_CALLS_IN_FLIGHT} calls from this peer are being answered; try again`))
        } else {
          this.inFlight++
          void this.answer(msg.id, msg.method, params).finally(() => { this.inFlight-- })
        }
      }
    } catch (err) {
      failure = toStaccatoError(err)
      this.stream.abort(failure)
    }
    const closedError = failure ?? new NetworkError('control channel closed by the peer')
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, closedError)
    return failure
  }

  private async answer (id: number, method: ControlMethod, params: unknown): Promise<void> {
    try {
      if (this.handlers.call === undefined) throw new ProtocolError(`this side does not take calls (${method})`)
      const result = await this.handlers.call(method, params as ControlParams<ControlMethod>)
      await this.write({ v: WIRE_VERSION, kind: 'reply', id, result: result ?? null })
    } catch (err) {
      const e = toStaccatoError(err)
      if (e.code === 'internal') this.handlers.onInternalError?.(method, e)
      await this.refuse(id, e)
    }
  }

  private async refuse (id: number, err: unknown): Promise<void> {
    const error = toStaccatoError(err).toJSON()
    // The refusal is a courtesy to a caller that may be gone; a broken stream ends the read loop, which closes the channel.
    await this.write({ v: WIRE_VERSION, kind: 'reply', id, error }).catch(() => {})
  }
}
