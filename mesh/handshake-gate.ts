import type { MultiaddrConnection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * Caps the inbound connections one source host may have in the
 * unauthenticated phase (TCP accepted, Noise handshake not finished).
 * libp2p's own cap on pending inbound connections is global, so without this
 * one host with no key fills it with sockets that never speak and every other
 * peer's dial is refused until they time out.
 *
 * A slot is taken when the connection is accepted and given back when the
 * handshake authenticates the peer or the connection closes, whichever comes
 * first, once per connection.
 */
export interface HandshakeGateOptions {
  /** Connections one host may have in their handshake at once. */
  pendingPerHost: number
  /** Inbound connections one host may hold once connected. */
  connectionsPerHost: number
  /** Inbound connections from this host key that are open now. */
  connectionsFrom: (host: string) => number
}

export class HandshakeGate {
  private readonly opts: HandshakeGateOptions
  private readonly pending = new Map<string, number>()
  private readonly holders = new WeakMap<MultiaddrConnection, string>()

  constructor (opts: HandshakeGateOptions) {
    this.opts = opts
  }

  /** How many handshakes are in progress from this host's key (for tests and metrics). */
  inProgress (host: string): number {
    return this.pending.get(host) ?? 0
  }

  /** For `denyInboundConnection`: false when this host already has its share of handshakes or connections. */
  admit (maConn: MultiaddrConnection): boolean {
    const host = hostKey(maConn.remoteAddr)
    // Not an IP connection (a relay, a unix socket): nothing per host to count.
    if (host === undefined) return true
    const count = this.pending.get(host) ?? 0
    if (count >= this.opts.pendingPerHost) return false
    if (count + this.opts.connectionsFrom(host) >= this.opts.connectionsPerHost) return false
    this.pending.set(host, count + 1)
    this.holders.set(maConn, host)
    maConn.addEventListener('close', () => { this.release(maConn) }, { once: true })
    return true
  }

  /** For `denyInboundEncryptedConnection`: the peer is authenticated, its handshake no longer counts. */
  release (maConn: MultiaddrConnection): void {
    const host = this.holders.get(maConn)
    if (host === undefined) return
    this.holders.delete(maConn)
    const count = (this.pending.get(host) ?? 1) - 1
    if (count <= 0) this.pending.delete(host)
    else this.pending.set(host, count)
  }
}

/**
 * The host a connection comes from, as the unit a single attacker controls:
 * an IPv4 address, or an IPv6 /64 (one host is routinely given a whole /64,
 * so counting single IPv6 addresses would cap nothing).
 */
export function hostKey (addr: Multiaddr): string | undefined {
  for (const c of addr.getComponents()) {
    if (c.name === 'ip4' && c.value !== undefined) return c.value
    if (c.name === 'ip6' && c.value !== undefined) return ipv6Key(c.value)
  }
  return undefined
}

function ipv6Key (value: string): string {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(value)
  if (dotted !== null) return dotted[1]
  const [head, tail] = value.toLowerCase().split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = (tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right])
    .map(g => g.replace(/^0+(?=.)/, ''))
  // An IPv4-mapped address (::ffff:a.b.c.d, however it is spelled) is that IPv4 host.
  if (groups.length === 8 && groups.slice(0, 5).every(g => g === '0') && groups[5] === 'ffff') {
    const [hi, lo] = [parseInt(groups[6], 16), parseInt(groups[7], 16)]
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  }
  return groups.slice(0, 4).join(':') + '::/64'
}
