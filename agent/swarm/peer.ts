import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { ProtocolError, Serial, SwarmMessage, WIRE_VERSION, decode, encodeFrame, send, toStaccatoError } from '../../mesh/index.ts'
import type { FrameReader } from '../../mesh/index.ts'
import type { Bitfield } from './bitfield.ts'
import type { Outgoing, PeerEvents, PeerLink } from './peer-link.ts'

/**
 * One /staccato/swarm/1 stream to another participant, after the hello
 * exchange. Both ends ask for and serve pieces on the same stream; sends are
 * serialized so that a piece header and its bytes are never interleaved with
 * another message.
 */
export class SwarmPeer implements PeerLink {
  readonly peerId: string
  readonly name: string
  readonly have: Bitfield
  /** Pieces we asked this peer for and wait for. */
  readonly inflight = new Set<number>()
  /** Pieces this peer declined to send us; asked elsewhere. */
  readonly refused = new Set<number>()
  /** Pieces only this peer (the seed) can send us: the holders it named are out of our reach. */
  readonly soleFor = new Set<number>()
  private readonly stream: Stream
  private readonly reader: FrameReader
  private readonly sending = new Serial()
  private closed = false

  constructor (stream: Stream, reader: FrameReader, peerId: string, name: string, have: Bitfield) {
    this.stream = stream
    this.reader = reader
    this.peerId = peerId
    this.name = name
    this.have = have
  }

  get isClosed (): boolean {
    return this.closed
  }

  /** Queues a message (and the bytes of a piece) behind everything sent before it. */
  async send (msg: Outgoing, parts?: Uint8Array[]): Promise<void> {
    const frame = encodeFrame({ v: WIRE_VERSION, ...msg })
    await this.sending.run(async () => {
      if (this.closed) return
      await send(this.stream, frame)
      if (parts !== undefined) await send(this.stream, new Uint8ArrayList(...parts))
    })
  }

  async run (events: PeerEvents): Promise<void> {
    let failure: Error | undefined
    try {
      while (true) {
        const raw = await this.reader.readFrameOrEnd()
        if (raw === undefined) break
        const msg = decode(SwarmMessage, raw, 'swarm message')
        switch (msg.t) {
          case 'have':
            if (this.have.set(msg.piece)) events.have(this, msg.piece)
            break
          case 'request': events.request(this, msg.piece, msg.sole === true); break
          case 'cancel': events.cancel(this, msg.piece); break
          case 'reject': events.reject(this, msg.piece, msg.reason, msg.holders ?? []); break
          case 'piece': {
            const parts: Uint8Array[] = []
            for await (const chunk of this.reader.readBytes(msg.length)) parts.push(chunk)
            events.piece(this, msg.piece, parts)
            break
          }
          case 'hello': throw new ProtocolError('second hello on a swarm stream')
        }
      }
    } catch (err) {
      failure = toStaccatoError(err)
    }
    this.close(failure)
    events.closed(this, failure)
  }

  close (err?: Error): void {
    if (this.closed) return
    this.closed = true
    if (err !== undefined) this.stream.abort(err)
    // The remote may have reset the stream already; either way it is closed, which is all that is asked here.
    else void this.stream.close().catch(() => {})
  }
}
