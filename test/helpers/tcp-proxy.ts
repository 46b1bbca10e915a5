import { connect, createServer } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'

/**
 * A loopback TCP relay put between an agent and the coordinator, so that a
 * test can cut the control connection (and keep it cut) while the agents'
 * data connections, which do not pass through it, carry on. Noise runs end to
 * end through it: the relay sees only ciphertext.
 */
export class TcpProxy {
  readonly port: number
  private readonly server: Server
  private readonly sockets = new Set<Socket>()
  private refusing = false

  private constructor (server: Server) {
    this.server = server
    this.port = (server.address() as AddressInfo).port
  }

  static async start (targetPort: number): Promise<TcpProxy> {
    const holder: { proxy?: TcpProxy } = {}
    const server = createServer(client => { holder.proxy?.relay(client, targetPort) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', resolve)
    })
    holder.proxy = new TcpProxy(server)
    return holder.proxy
  }

  /** `/ip4/127.0.0.1/tcp/<coordinator port>/p2p/<id>` with this relay's port instead. */
  address (coordinatorMultiaddr: string): string {
    return coordinatorMultiaddr.replace(/\/tcp\/\d+\//, `/tcp/${this.port}/`)
  }

  /** Drops every relayed connection and refuses new ones until open(). */
  cut (): void {
    this.refusing = true
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
  }

  open (): void {
    this.refusing = false
  }

  async close (): Promise<void> {
    this.cut()
    await new Promise<void>(resolve => this.server.close(() => resolve()))
  }

  private relay (client: Socket, targetPort: number): void {
    if (this.refusing) {
      client.destroy()
      return
    }
    const upstream = connect(targetPort, '127.0.0.1')
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      this.sockets.add(a)
      a.pipe(b)
      a.on('error', () => b.destroy())
      a.on('close', () => {
        this.sockets.delete(a)
        b.destroy()
      })
    }
  }
}

/** The TCP port of a `/ip4/…/tcp/<port>/…` multiaddr. */
export function tcpPort (multiaddr: string): number {
  const m = /\/tcp\/(\d+)/.exec(multiaddr)
  if (m === null) throw new Error(`no tcp port in ${multiaddr}`)
  return Number(m[1])
}
