import { isIP } from 'node:net'
import type { Server, Socket } from 'node:net'

export interface ConnectionLimits {
  /** Open connections one client (an IPv4 address, an IPv6 /64) may hold; 0: no cap. */
  perAddress: number
  /** A connection that has not sent a byte by then is closed. */
  firstByteMs: number
}

/**
 * Guards the REST server's connection slots. The server-wide cap
 * (maxConnections) alone lets one host take every slot with sockets that
 * never finish a request, and /healthz goes unanswered for everyone. Counted
 * on the raw TCP socket, before TLS and before any byte is parsed.
 *
 * Node's headersTimeout closes a connection whose headers are incomplete,
 * but only once the first byte has arrived: a socket that stays silent would
 * hold its slot for ever, so it gets a deadline of its own.
 */
export function guardConnections (server: Server, limits: ConnectionLimits): void {
  const open = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const key = clientKey(socket.remoteAddress)
    const n = open.get(key) ?? 0
    if (limits.perAddress > 0 && n >= limits.perAddress) {
      socket.destroy()
      return
    }
    open.set(key, n + 1)
    const silent = setTimeout(() => { if (socket.bytesRead === 0) socket.destroy() }, limits.firstByteMs)
    silent.unref()
    socket.once('close', () => {
      clearTimeout(silent)
      const left = (open.get(key) ?? 1) - 1
      if (left <= 0) open.delete(key)
      else open.set(key, left)
    })
  })
}

/**
 * One client: an IPv4 address (also when seen as ::ffff:a.b.c.d), or an
 * IPv6 /64 — a single host is commonly given a whole /64, so counting each
 * of its addresses apart would not cap it at all.
 */
export function clientKey (address: string | undefined): string {
  if (address === undefined) return 'unknown'
  const plain = address.split('%')[0]
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(plain)
  if (mapped !== null) return mapped[1]
  if (isIP(plain) !== 6) return plain
  const [head, tail] = plain.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  // An embedded IPv4 tail (::1.2.3.4) counts as two groups but lies past the /64 either way.
  const groups = [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
  return `${groups.slice(0, 4).map(g => parseInt(g, 16).toString(16)).join(':')}::/64`
}
