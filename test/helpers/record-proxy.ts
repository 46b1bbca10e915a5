import { connect, createServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'

/**
 * What the attacker does with one record of the dialer → listener direction:
 * `forward` passes bytes on, `end` ends the listener's side (a FIN) after them.
 */
export interface RecordAction { forward: Buffer[], end?: boolean }
/** `index` counts records from 0; `record` is the whole record as on the wire (header, ciphertext, tag). */
export type RecordPolicy = (index: number, record: Buffer) => RecordAction

const HEADER_BYTES = 5
const TAG_BYTES = 16

/**
 * A loopback TCP relay that understands /staccato/noise-aesgcm/1 framing from
 * the dialer: it passes the two multistream-select messages (unsigned varint
 * length each) and the two Noise handshake messages the dialer sends (u16
 * length each) untouched, then hands each record
 * (`[u32 length][u8 type][length bytes][16-byte tag]`) to the policy. The
 * listener → dialer direction is relayed as is.
 */
export class RecordProxy {
  readonly port: number
  private readonly server: Server
  private readonly sockets = new Set<Socket>()

  private constructor (server: Server) {
    this.server = server
    this.port = (server.address() as AddressInfo).port
  }

  static async start (targetPort: number, policy: RecordPolicy): Promise<RecordProxy> {
    const holder: { proxy?: RecordProxy } = {}
    const server = createServer(client => { holder.proxy?.relay(client, targetPort, policy) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', resolve)
    })
    holder.proxy = new RecordProxy(server)
    return holder.proxy
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }

  private relay (client: Socket, targetPort: number, policy: RecordPolicy): void {
    const upstream = connect(targetPort, '127.0.0.1')
    for (const s of [client, upstream]) {
      this.sockets.add(s)
      s.on('error', () => { client.destroy(); upstream.destroy() })
      s.on('close', () => {
        this.sockets.delete(s)
        ;(s === client ? upstream : client).destroy()
      })
    }
    upstream.pipe(client)
    const parser = new DialerParser(policy)
    client.on('data', (data: Buffer) => {
      if (upstream.writableEnded) return
      for (const action of parser.push(data)) {
        for (const b of action.forward) upstream.write(b)
        if (action.end === true) {
          upstream.end()
          return
        }
      }
    })
  }
}

/** Splits the dialer's byte stream into the handshake prefix and records. */
class DialerParser {
  private buffer = Buffer.alloc(0)
  private prefixMessages = 0
  private records = 0
  private readonly policy: RecordPolicy

  constructor (policy: RecordPolicy) {
    this.policy = policy
  }

  push (data: Buffer): RecordAction[] {
    this.buffer = Buffer.concat([this.buffer, data])
    const actions: RecordAction[] = []
    // Each pass takes one whole message or record off the buffer, or stops.
    for (;;) {
      const size = this.nextSize()
      if (size === undefined || this.buffer.byteLength < size) return actions
      const message = this.buffer.subarray(0, size)
      this.buffer = this.buffer.subarray(size)
      if (this.prefixMessages < 4) {
        this.prefixMessages++
        actions.push({ forward: [message] })
      } else {
        actions.push(this.policy(this.records++, Buffer.from(message)))
      }
    }
  }

  /** Bytes of the next whole message, or undefined while its length is incomplete. */
  private nextSize (): number | undefined {
    const b = this.buffer
    if (this.prefixMessages < 2) {
      // multistream-select: unsigned varint length, then that many bytes.
      let length = 0
      for (let i = 0; i < Math.min(b.byteLength, 4); i++) {
        length |= (b[i] & 0x7f) << (7 * i)
        if ((b[i] & 0x80) === 0) return i + 1 + length
      }
      return undefined
    }
    if (this.prefixMessages < 4) return b.byteLength < 2 ? undefined : 2 + b.readUInt16BE(0)
    return b.byteLength < HEADER_BYTES ? undefined : HEADER_BYTES + b.readUInt32BE(0) + TAG_BYTES
  }
}
