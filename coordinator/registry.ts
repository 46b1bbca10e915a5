import type { Connection, Stream } from '@libp2p/interface'
import {
  CONTROL_PROTOCOL, ControlChannel, AgentOfflineError, PermissionDeniedError, isValidAgentName, InvalidArgumentError, errorFields
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
  /**
   * Settles what a registering agent holds (journaled outcomes, attempts still
   * running) while it is not yet online, so nothing is scheduled for it first.
   * Resolves with the ids of the outcomes taken; never rejects.
   */
  onRegister: (agent: string, held: ControlParams<'register'>) => Promise<string[]>
  onOnline: (agent: string, held: ControlParams<'register'>) => void
  onOffline: (agent: string) => Promise<void>
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
  /**
   * Per agent, its registrations, its going offline and requeues of its work
   * run one at a time: a late 'offline' must not requeue what a registration
   * just settled.
   */
  private readonly lifecycles = new Map<string, Promise<unknown>>()
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

  /** Runs fn after every earlier registration and disconnection of this agent, and before any later one. */
  exclusive<T> (agent: string, fn: () => Promise<T>): Promise<T> {
    const ran = (this.lifecycles.get(agent) ?? Promise.resolve()).then(fn)
    // The failure is the caller's (ran); the next lifecycle step only waits for this one to settle.
    const tail = ran.catch(() => {})
    this.lifecycles.set(agent, tail)
    void tail.then(() => { if (this.lifecycles.get(agent) === tail) this.lifecycles.delete(agent) })
    return ran
  }

  async call<M extends ControlMethod> (agent: string, method: M, params: ControlParams<M>): Promise<unknown> {
    const s = this.sessions.get(agent)
    if (s === undefined) throw new AgentOfflineError(`agent '${agent}' is not connected`)
    return await s.channel.call(method, params)
  }

  cast<M extends ControlMethod> (agent: string, method: M, params: ControlParams<M>): void {
    // Casts are fire-and-forget: a cancel an offline agent misses is sent again when it registers (reconcile).
    void this.sessions.get(agent)?.channel.cast(method, params).catch(() => {})
  }

  private accept (stream: Stream, connection: Connection): void {
    const peerId = connection.remotePeer.toString()
    let name: string | undefined
    const channel: ControlChannel = new ControlChannel(stream, {
      call: async (method, params) => {
        if (method === 'register') {
          const p = params as ControlParams<'register'>
          const settled = await this.exclusive(p.name, async () => await this.register(channel, peerId, p))
          name = p.name
          return { heartbeatMs: this.opts.heartbeatMs, settled }
        }
        if (name === undefined) throw new PermissionDeniedError(`'${method}' before 'register'`)
        this.touch(name, channel)
        return await this.opts.onCall(name, method, params)
      },
      cast: (method, params) => {
        if (name === undefined || !this.touch(name, channel)) return
        this.opts.onCast(name, method, params)
      },
      onInternalError: (method, err) => { this.opts.log('an agent\'s call failed on a bug', { agent: name, peerId, method, ...errorFields(err) }) }
    })
    void channel.closed.then(err => {
      if (name !== undefined && this.sessions.get(name)?.channel === channel) {
        this.opts.log('agent disconnected', { agent: name, error: err?.message }, err === undefined ? 'info' : 'warn')
        void this.markOffline(name, channel)
      }
    })
  }

  private touch (name: string, channel: ControlChannel): boolean {
    const s = this.sessions.get(name)
    if (s?.channel !== channel) return false
    s.lastSeen = Date.now()
    return true
  }

  /** Admits the agent, settles what it holds, then puts it online. Resolves with the outcomes taken. */
  private async register (channel: ControlChannel, peerId: string, p: ControlParams<'register'>): Promise<string[]> {
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
    if (previous !== undefined && previous.channel !== channel) {
      // Replaced, not lost: its close must not requeue what this registration settles.
      this.sessions.delete(p.name)
      previous.channel.close()
    }
    const settled = await this.opts.onRegister(p.name, p)
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
    log(known === undefined ? 'agent enrolled' : 'agent registered', { agent: p.name, peerId, addrs: p.addrs, outcomesSettled: settled.length })
    this.opts.onOnline(p.name, p)
    return settled
  }

  private checkLiveness (): void {
    const deadline = Date.now() - this.opts.heartbeatTimeoutMs
    for (const [name, s] of this.sessions) {
      if (s.lastSeen < deadline) {
        this.opts.log('agent missed its heartbeats', { agent: name })
        s.channel.close()
        void this.markOffline(name, s.channel)
      }
    }
  }

  /** Drops a removed agent's session: its connection is closed, and it is not marked offline (its record is gone). */
  forget (name: string): void {
    const session = this.sessions.get(name)
    this.sessions.delete(name)
    session?.channel.close()
  }

  private async markOffline (name: string, channel: ControlChannel): Promise<void> {
    // Gone from the map at once, so nothing more is sent or scheduled to it.
    if (this.sessions.get(name)?.channel === channel) this.sessions.delete(name)
    await this.exclusive(name, async () => {
      // A registration since then owns the agent now: what it settled stays settled.
      if (this.sessions.has(name)) return
      const rec = this.opts.store.getAgent(name)
      if (rec?.online === true) await this.opts.store.putAgent({ ...rec, online: false, lastSeenAt: new Date().toISOString() })
      await this.opts.onOffline(name)
    }).catch(err => this.opts.log('could not take an agent offline', { agent: name, error: String(err) }, 'warn'))
  }
}
