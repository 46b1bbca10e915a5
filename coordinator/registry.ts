import type { Connection, Stream } from '@libp2p/interface'
import {
  CONTROL_PROTOCOL, ControlChannel, AgentOfflineError, PermissionDeniedError, isValidAgentName, InvalidArgumentError
} from '../mesh/index.ts'
import type { ControlMethod, ControlParams, MeshNode } from '../mesh/index.ts'
import type { TransferStore } from './store.ts'
import type { AgentRecord } from './model.ts'

export interface RegistryOptions {
  node: MeshNode
  store: TransferStore
  /**
   * Checks (and, for a single-use token, spends) the join token of an
   * agent's first registration; the reason is logged, never told to the agent.
   */
  admit: (joinToken: string | undefined, who: { agent: string, peerId: string }) => Promise<{ ok: true } | { ok: false, reason: string }>
  heartbeatMs: number
  /** An agent silent for this long is offline. */
  heartbeatTimeoutMs: number
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** Calls and casts from a registered agent (progress, report, heartbeat). */
  onCall: (agent: string, method: ControlMethod, params: unknown) => Promise<unknown>
  onCast: (agent: string, method: ControlMethod, params: unknown) => void
  onOnline: (agent: string, claimed: string[]) => void
  onOffline: (agent: string) => void
}

interface Session { channel: ControlChannel, peerId: string, lastSeen: number }

/**
 * Which agents are connected, by name, and the control channel to each. An
 * agent becomes known by registering with a join token; from then on its
 * peer id (authenticated by noise) is its credential, and another key
 * claiming the same name is refused.
 */
export class AgentRegistry {
  private readonly opts: RegistryOptions
  private readonly sessions = new Map<string, Session>()
  /** Names whose first registration is under way, by peer id: two keys racing for one new name must not both win. */
  private readonly enrolling = new Map<string, string>()
  private timer?: NodeJS.Timeout

  constructor (opts: RegistryOptions) {
    this.opts = opts
  }

  async start (): Promise<void> {
    // Everything was offline while the coordinator was down; agents re-register.
    for (const rec of this.opts.store.listAgents()) {
      if (rec.online) await this.opts.store.putAgent({ ...rec, online: false })
    }
    await this.opts.node.handle(CONTROL_PROTOCOL, (stream, connection) => { this.accept(stream, connection) }, { maxInboundStreams: 4 })
    this.timer = setInterval(() => { this.checkLiveness() }, Math.min(1000, this.opts.heartbeatMs))
  }

  stop (): void {
    clearInterval(this.timer)
    for (const s of this.sessions.values()) s.channel.close()
  }

  isOnline (name: string): boolean {
    return this.sessions.has(name)
  }

  async call<M extends ControlMethod> (agent: string, method: M, params: ControlParams<M>): Promise<unknown> {
    const s = this.sessions.get(agent)
    if (s === undefined) throw new AgentOfflineError(`agent '${agent}' is not connected`)
    return await s.channel.call(method, params)
  }

  cast<M extends ControlMethod> (agent: string, method: M, params: ControlParams<M>): void {
    void this.sessions.get(agent)?.channel.cast(method, params).catch(() => {})
  }

  private accept (stream: Stream, connection: Connection): void {
    const peerId = connection.remotePeer.toString()
    let name: string | undefined
    const channel: ControlChannel = new ControlChannel(stream, {
      call: async (method, params) => {
        if (method === 'register') {
          name = await this.register(channel, peerId, params as ControlParams<'register'>)
          return { heartbeatMs: this.opts.heartbeatMs }
        }
        if (name === undefined) throw new PermissionDeniedError(`'${method}' before 'register'`)
        this.touch(name, channel)
        return await this.opts.onCall(name, method, params)
      },
      cast: (method, params) => {
        if (name === undefined || !this.touch(name, channel)) return
        this.opts.onCast(name, method, params)
      }
    })
    void channel.closed.then(err => {
      if (name !== undefined && this.sessions.get(name)?.channel === channel) {
        this.opts.log('agent disconnected', { agent: name, error: err?.message }, err === undefined ? 'info' : 'warn')
        void this.markOffline(name)
      }
    })
  }

  private touch (name: string, channel: ControlChannel): boolean {
    const s = this.sessions.get(name)
    if (s?.channel !== channel) return false
    s.lastSeen = Date.now()
    return true
  }

  private async register (channel: ControlChannel, peerId: string, p: ControlParams<'register'>): Promise<string> {
    const { store, log } = this.opts
    if (!isValidAgentName(p.name)) throw new InvalidArgumentError(`'${p.name}' is not a valid agent name`)
    const known = store.getAgent(p.name)
    if (known !== undefined && known.peerId !== peerId) {
      log('refused an agent claiming an enrolled name with another key', { agent: p.name, peerId, enrolledPeerId: known.peerId }, 'warn')
      throw new PermissionDeniedError(`agent name '${p.name}' is enrolled with another key`)
    }
    if (known === undefined) {
      const claimant = this.enrolling.get(p.name)
      if (claimant !== undefined && claimant !== peerId) {
        log('refused an agent claiming a name another key is enrolling', { agent: p.name, peerId, claimant }, 'warn')
        throw new PermissionDeniedError(`agent name '${p.name}' is being enrolled with another key`)
      }
      this.enrolling.set(p.name, peerId)
      const admitted = await this.opts.admit(p.joinToken, { agent: p.name, peerId }).catch(err => {
        this.enrolling.delete(p.name)
        throw err
      })
      if (!admitted.ok) {
        this.enrolling.delete(p.name)
        log('refused an agent without a valid join token', { agent: p.name, peerId, reason: admitted.reason }, 'warn')
        throw new PermissionDeniedError(`agent '${p.name}' is not enrolled and its join token is missing, invalid, expired or already used`)
      }
    }
    const previous = this.sessions.get(p.name)
    if (previous !== undefined && previous.channel !== channel) previous.channel.close()
    const now = new Date().toISOString()
    const rec: AgentRecord = {
      name: p.name,
      peerId,
      addrs: p.addrs,
      volumes: p.volumes,
      plugins: p.plugins,
      version: p.version,
      online: true,
      enrolledAt: known?.enrolledAt ?? now,
      lastSeenAt: now
    }
    await store.putAgent(rec).finally(() => { if (this.enrolling.get(p.name) === peerId) this.enrolling.delete(p.name) })
    this.sessions.set(p.name, { channel, peerId, lastSeen: Date.now() })
    log(known === undefined ? 'agent enrolled' : 'agent registered', { agent: p.name, peerId, addrs: p.addrs })
    this.opts.onOnline(p.name, p.active)
    return p.name
  }

  private checkLiveness (): void {
    const deadline = Date.now() - this.opts.heartbeatTimeoutMs
    for (const [name, s] of this.sessions) {
      if (s.lastSeen < deadline) {
        this.opts.log('agent missed its heartbeats', { agent: name })
        s.channel.close()
        void this.markOffline(name)
      }
    }
  }

  /** Drops a removed agent's session: its connection is closed, and it is not marked offline (its record is gone). */
  forget (name: string): void {
    const session = this.sessions.get(name)
    this.sessions.delete(name)
    session?.channel.close()
  }

  private async markOffline (name: string): Promise<void> {
    this.sessions.delete(name)
    const rec = this.opts.store.getAgent(name)
    if (rec?.online === true) await this.opts.store.putAgent({ ...rec, online: false, lastSeenAt: new Date().toISOString() })
    this.opts.onOffline(name)
  }
}
