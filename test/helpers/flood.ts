import { connect } from 'node:net'
import type { Socket } from 'node:net'

/**
 * Raw TCP sockets that connect to a port and never send a byte, from several
 * loopback source addresses (127.0.0.2 …) so that they look like several
 * hosts. A socket the target closes is opened again after a short pause, as a
 * real attacker would, until `stop()` or the connect budget is spent.
 */
export class RawFlood {
  private readonly port: number
  private readonly hosts: string[]
  private readonly perHost: number
  private readonly sockets = new Set<Socket>()
  private readonly refusedHosts = new Set<string>()
  private readonly waiters: Array<() => void> = []
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly pauseMs: number
  private budget: number
  private stopped = false

  /**
   * `budget` bounds the connects over the flood's life, so that it cannot spin
   * without end; `pauseMs` paces the reconnects (load shaping, not synchronisation).
   */
  constructor (port: number, hosts: string[], perHost: number, opts: { budget?: number, pauseMs?: number } = {}) {
    this.port = port
    this.hosts = hosts
    this.perHost = perHost
    this.budget = opts.budget ?? 20_000
    this.pauseMs = opts.pauseMs ?? 250
  }

  start (): this {
    for (const host of this.hosts) for (let i = 0; i < this.perHost; i++) this.open(host)
    return this
  }

  /** Resolves once the target has closed a socket from every source host: it is turning that host away. */
  async saturated (): Promise<void> {
    if (this.refusedHosts.size === this.hosts.length) return
    await new Promise<void>(resolve => this.waiters.push(resolve))
  }

  stop (): void {
    this.stopped = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
  }

  private open (host: string): void {
    if (this.stopped || this.budget <= 0) return
    this.budget--
    const socket = connect({ host: '127.0.0.1', port: this.port, localAddress: host })
    this.sockets.add(socket)
    let connected = false
    socket.on('connect', () => { connected = true })
    socket.on('error', () => {})
    socket.on('close', () => {
      this.sockets.delete(socket)
      if (this.stopped) return
      if (connected) this.refused(host)
      const t = setTimeout(() => {
        this.timers.delete(t)
        this.open(host)
      }, this.pauseMs)
      this.timers.add(t)
    })
  }

  private refused (host: string): void {
    this.refusedHosts.add(host)
    if (this.refusedHosts.size < this.hosts.length) return
    for (const w of this.waiters.splice(0)) w()
  }
}

/** n loopback addresses other than 127.0.0.1, one per pretend host. */
export function loopbackHosts (n: number): string[] {
  return Array.from({ length: n }, (_v, i) => `127.0.0.${i + 2}`)
}
