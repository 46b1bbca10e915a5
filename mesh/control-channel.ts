import type { Stream } from '@libp2p/interface'
import { ControlEnvelope, WIRE_VERSION, decode } from './messages.ts'
import type { CallMethod, CastMethod, ControlHandlers, Direction, Params, Result } from './control-methods.ts'
import { AgentToCoordinator, CoordinatorToAgent } from './control-methods.ts'
import { FrameReader, encodeFrame, send } from './wire.ts'
import { NetworkError, ProtocolError, TimeoutError, UnsupportedError, fromErrorInfo, toStaccatoError } from './errors.ts'
import type { StaccatoError } from './errors.ts'

/** Which map a side sends from and which it answers. */
export interface ControlSide<Out extends Direction, In extends Direction> { outgoing: Out, incoming: In }
export const AGENT_SIDE: ControlSide<AgentToCoordinator, CoordinatorToAgent> = { outgoing: AgentToCoordinator, incoming: CoordinatorToAgent }
export const COORDINATOR_SIDE: ControlSide<CoordinatorToAgent, AgentToCoordinator> = { outgoing: CoordinatorToAgent, incoming: AgentToCoordinator }

/** What a side answers with: one handler per incoming method, registered once. */
export interface ControlTable<In extends Direction, Ctx> {
  handlers: ControlHandlers<In, Ctx>
  /**
   * The context one message from the peer is handled in (who the peer is).
   * Throwing refuses the message: a call is answered with the error, a cast is dropped.
   */
  context: (method: keyof In & string, kind: 'call' | 'cast') => Ctx
}

export interface ControlOptions<In extends Direction, Ctx> {
  /** Absent on a side that only calls (tests): every call from the peer is refused. */
  table?: ControlTable<In, Ctx>
  /** A handler failed with an error nothing names (a bug): a caller gets `internal`, this side's log gets the stack. */
  onInternalError?: (method: string, err: StaccatoError) => void
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
export class ControlChannel<Out extends Direction, In extends Direction, Ctx = undefined> {
  readonly stream: Stream
  readonly closed: Promise<Error | undefined>
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private inFlight = 0
  private readonly side: ControlSide<Out, In>
  private readonly options: ControlOptions<In, Ctx>

  constructor (stream: Stream, side: ControlSide<Out, In>, options: ControlOptions<In, Ctx> = {}) {
    this.stream = stream
    this.side = side
    this.options = options
    this.closed = this.readLoop()
  }

  async call<M extends CallMethod<Out>> (method: M, params: Params<Out, M>, timeoutMs = 30_000): Promise<Result<Out, M>> {
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
    const reply = await result
    const spec: Direction[string] = this.side.outgoing[method]
    // A reply is checked like any message from the peer; a bad one fails this call, not the channel.
    // The schema checked is the one Result<Out, M> is the static type of. (Only an untyped caller
    // sends a cast as a call: a test of what the peer does with one.)
    return (spec.kind === 'call' ? decode(spec.result, reply, `${method} reply`) : reply) as Result<Out, M>
  }

  async cast<M extends CastMethod<Out>> (method: M, params: Params<Out, M>): Promise<void> {
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
          // The peer closed its side: close ours, so that both read loops end. A close that fails finds the
          // stream already reset or aborted: ended all the same, which is all this wants.
          await this.stream.close().catch(() => {})
          break
        }
        const msg = decode(ControlEnvelope, raw, 'control message')
        if (msg.kind === 'reply') {
          this.settle(msg.id, msg.result, msg.error !== undefined ? fromErrorInfo(msg.error) : undefined)
          continue
        }
        const method = this.incoming(msg.method)
        if (method === undefined) throw new ProtocolError(`unknown control method '${msg.method}'`)
        const params = decode(this.side.incoming[method].params, msg.params, `${method} parameters`)
        if (msg.kind === 'cast') {
          void this.handle(method, 'cast', params).catch(err => { this.reportInternal(method, err) })
        } else if (this.inFlight >= MAX_CALLS_IN_FLIGHT) {
          void this.refuse(msg.id, new NetworkError(`busy: ${MAX_CALLS_IN_FLIGHT} calls from this peer are being answered; try again`))
        } else {
          this.inFlight++
          void this.answer(msg.id, method, params).finally(() => { this.inFlight-- })
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

  /** The method's name as one this side answers, or undefined. */
  private incoming (method: string): (keyof In & string) | undefined {
    return Object.hasOwn(this.side.incoming, method) ? method : undefined
  }

  /** Runs the table's handler for a message whose parameters were checked against `method`'s schema. */
  private async handle (method: keyof In & string, kind: 'call' | 'cast', params: unknown): Promise<unknown> {
    const table = this.options.table
    if (table === undefined) throw new ProtocolError(`this side does not take calls (${method})`)
    // Before the kind is checked: a side's gate (e.g. "register first") answers whatever comes before it passes.
    const ctx = table.context(method, kind)
    if (this.side.incoming[method].kind !== kind) throw new UnsupportedError(`'${method}' is taken as a ${this.side.incoming[method].kind}, not as a ${kind}`)
    // The one place a method name meets its handler: `params` matched In[method].params just before.
    const handler = table.handlers[method] as (params: unknown, ctx: Ctx) => Promise<unknown>
    return await handler(params, ctx)
  }

  private async answer (id: number, method: keyof In & string, params: unknown): Promise<void> {
    try {
      const result = await this.handle(method, 'call', params)
      await this.write({ v: WIRE_VERSION, kind: 'reply', id, result: result ?? null })
    } catch (err) {
      await this.refuse(id, this.reportInternal(method, err))
    }
  }

  /** Logs a bug (an `internal` error) on this side, where its stack is; a refusal by the gate is expected and says nothing. A cast has no one else to tell. */
  private reportInternal (method: string, err: unknown): StaccatoError {
    const e = toStaccatoError(err)
    if (e.code === 'internal') this.options.onInternalError?.(method, e)
    return e
  }

  private async refuse (id: number, err: unknown): Promise<void> {
    const error = toStaccatoError(err).toJSON()
    // The refusal is a courtesy to a caller that may be gone; a broken stream ends the read loop, which closes the channel.
    await this.write({ v: WIRE_VERSION, kind: 'reply', id, error }).catch(() => {})
  }
}
