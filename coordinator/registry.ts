import type { Connection, Stream } from '@libp2p/interface'
import {
  CONTROL_PROTOCOL, COORDINATOR_SIDE, ControlChannel, NetworkError, PermissionDeniedError, isValidAgentName, InvalidArgumentError, errorFields,
  StaccatoError, toStaccatoError
} from '../mesh/index.ts'
import type { AgentToCoordinator, ControlHandlers, ControlParams, MeshNode } from '../mesh/index.ts'
import type { TransferStore } from './store.ts'
import type { AgentRecord } from './model.ts'
import type { AgentChannel, AgentConnection, AgentContext, AgentLive, AgentSessions } from './agent-sessions.ts'
import type { Clock, ClockTimer } from './clock.ts'

/** What happens to an agent's work as it registers, comes online and goes away (the dispatcher's part). */
export interface AgentLifecycle {
  /**
   * Settles what a registering agent holds (journaled outcomes, attempts still
   * running) while it is not yet online, so nothing is scheduled for it first.
   * Resolves with the ids of the outcomes taken; never rejects.
   */
  onRegister: (agent: string, held: ControlParams<'register'>) => Promise<string[]>
  onOnline: (agent: string, held: ControlParams<'register'>) => void
  onOffline: (agent: string) => Promise<void>
}

/** The handlers of the other parts (transfers, distributions): everything an agent sends but its registration and heartbeats. */
export type PartHandlers = Omit<ControlHandlers<AgentToCoordinator, AgentContext>, 'register' | 'heartbeat'>

export interface RegistryOptions {
  node: MeshNode
  store: TransferStore
  sessions: AgentSessions
  clock: Clock
  /**
   * Checks (and, for a single-use token, spends) the join token of an
   * agent's first registration; the reason is logged, never told to the agent.
   */
  admit: (joinToken: string | undefined, who: { agent: string, peerId: string }) => Promise<{ ok: true } | { ok: false, reason: string }>
  heartbeatMs: number
  /** An agent silent for this long is offline. */
  heartbeatTimeoutMs: number
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  lifecycle: AgentLifecycle
  handlers: PartHandlers
  /**
   * Whether this coordinator takes registrations: only the leader of replicas
   * on one database does (agents go round their --coordinator list until one
   * accepts them); default always.
   */
  accepting?: () => boolean
}

export type { AgentLive }

/**
 * Admits agents and keeps track of their liveness. An agent becomes known by
 * registering with a join token; from then on its peer id (authenticated by
 * noise) is its credential, and another key claiming the same name is
 * refused. Every control stream is answered by one table, built once from
 * the registry's own handlers (register, heartbeat) and the other parts'.
 */
export class AgentRegistry {
  private readonly opts: RegistryOptions
  private readonly sessions: AgentSessions
  /** Names whose first registration is under way, by peer id: two keys racing for one new name must not both win. */
  private readonly enrolling = new Map<string, string>()
  private readonly table: ControlHandlers<AgentToCoordinator, AgentConnection>
  private timer?: ClockTimer
  private stopped = false

  constructor (opts: RegistryOptions) {
    this.opts = opts
    this.sessions = opts.sessions
    this.table = {
      ...opts.handlers,
      register: async (p, conn) => {
        const settled = await this.sessions.exclusive(p.name, async () => await this.register(conn, p))
        conn.name = p.name
        return { heartbeatMs: this.opts.heartbeatMs, settled }
      },
      heartbeat: async (p, conn) => {
        if (p.volumes !== undefined) this.sessions.noteSpace(conn.agent, p.volumes)
      }
    }
  }

  async start (): Promise<void> {
    await this.opts.node.handle(CONTROL_PROTOCOL, (stream, connection) => { this.accept(stream, connection) }, { maxInboundStreams: 4 })
    this.scheduleLiveness()
  }

  /**
   * This coordinator now takes registrations (it started alone, or became the
   * leader). Agents the records say are online but that hold no session here
   * were connected to a coordinator that is gone: offline until they register
   * again.
   */
  async lead (): Promise<void> {
    for (const rec of this.opts.store.listAgents()) {
      if (rec.online && !this.sessions.isOnline(rec.name)) await this.opts.store.putAgent({ ...rec, online: false })
    }
  }

  /**
   * This replica stopped leading: its agent sessions close so that the agents
   * find the new leader. They are not marked offline here: the new leader
   * owns their records now.
   */
  resign (): void {
    for (const { agent, channel } of this.sessions.silentSince(Number.POSITIVE_INFINITY)) {
      this.sessions.drop(agent, channel)
      channel.close()
    }
  }

  stop (): void {
    this.stopped = true
    this.timer?.cancel()
    for (const channel of this.sessions.all()) channel.close()
  }

  isOnline (name: string): boolean {
    return this.sessions.isOnline(name)
  }

  /** When a connected agent was last heard from, and its volumes' free space: undefined while it is offline. */
  live (name: string): AgentLive | undefined {
    return this.sessions.live(name)
  }

  private accept (stream: Stream, connection: Connection): void {
    const peerId = connection.remotePeer.toString()
    const conn: AgentConnection = {
      peerId,
      channel: new ControlChannel(stream, COORDINATOR_SIDE, {
        table: {
          handlers: this.table,
          context: (method, kind) => {
            // The handshake: the one message a peer may send before it is an agent.
            if (method === 'register') return conn
            if (conn.name === undefined) throw new PermissionDeniedError(`'${method}' before 'register'`)
            // A cast on a channel a newer registration replaced is dropped; its calls are still answered.
            if (!this.sessions.touch(conn.name, conn.channel) && kind === 'cast') throw new NetworkError('a newer registration replaced this channel')
            return conn
          }
        },
        onInternalError: (method, err) => { this.opts.log('an agent\'s call failed on a bug', { agent: conn.name, peerId, method, ...errorFields(err) }) }
      }),
      get agent (): string {
        if (this.name === undefined) throw new PermissionDeniedError('not registered')
        return this.name
      }
    }
    void conn.channel.closed.then(err => {
      if (conn.name !== undefined && this.sessions.channel(conn.name) === conn.channel) {
        this.opts.log('agent disconnected', { agent: conn.name, error: err?.message }, err === undefined ? 'info' : 'warn')
        void this.markOffline(conn.name, conn.channel)
      }
    })
  }

  /** Admits the agent, settles what it holds, then puts it online. Resolves with the outcomes taken. */
  private async register (conn: AgentConnection, p: ControlParams<'register'>): Promise<string[]> {
    const { store, log } = this.opts
    const { peerId, channel } = conn
    if (!isValidAgentName(p.name)) throw new InvalidArgumentError(`'${p.name}' is not a valid agent name`)
    if (this.opts.accepting?.() === false) throw new StaccatoError('unavailable', 'this coordinator replica does not lead: register with the leader (the next address of --coordinator)', true)
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
    const previous = this.sessions.channel(p.name)
    if (previous !== undefined && previous !== channel) {
      // Replaced, not lost: its close must not requeue what this registration settles.
      this.sessions.drop(p.name)
      previous.close()
    }
    const settled = await this.opts.lifecycle.onRegister(p.name, p)
    const now = new Date(this.opts.clock.now()).toISOString()
    const rec: AgentRecord = {
      name: p.name,
      peerId,
      addrs: p.addrs,
      volumes: p.volumes,
      plugins: p.plugins,
      ...(p.labels !== undefined ? { labels: p.labels } : {}),
      version: p.version,
      online: true,
      enrolledAt: known?.enrolledAt ?? now,
      lastSeenAt: now
    }
    await store.putAgent(rec).finally(() => { if (this.enrolling.get(p.name) === peerId) this.enrolling.delete(p.name) })
    this.sessions.open(p.name, channel, peerId)
    log(known === undefined ? 'agent enrolled' : 'agent registered', { agent: p.name, peerId, addrs: p.addrs, outcomesSettled: settled.length })
    this.opts.lifecycle.onOnline(p.name, p)
    return settled
  }

  /** Checked at most once a second, and at least once per heartbeat interval. */
  private scheduleLiveness (): void {
    if (this.stopped) return
    this.timer = this.opts.clock.setTimeout(() => {
      this.checkLiveness()
      this.scheduleLiveness()
    }, Math.min(1000, this.opts.heartbeatMs))
  }

  /** Takes every agent silent for longer than the heartbeat timeout offline (run by the liveness timer). */
  checkLiveness (): void {
    for (const { agent, channel } of this.sessions.silentSince(this.opts.clock.now() - this.opts.heartbeatTimeoutMs)) {
      this.opts.log('agent missed its heartbeats', { agent })
      channel.close()
      void this.markOffline(agent, channel)
    }
  }

  /** Drops a removed agent's session: its connection is closed, and it is not marked offline (its record is gone). */
  forget (name: string): void {
    const channel = this.sessions.channel(name)
    this.sessions.drop(name)
    channel?.close()
  }

  private async markOffline (name: string, channel: AgentChannel): Promise<void> {
    // Gone from the map at once, so nothing more is sent or scheduled to it.
    this.sessions.drop(name, channel)
    await this.sessions.exclusive(name, async () => {
      // A registration since then owns the agent now: what it settled stays settled.
      if (this.sessions.isOnline(name)) return
      const rec = this.opts.store.getAgent(name)
      if (rec?.online === true) await this.opts.store.putAgent({ ...rec, online: false, lastSeenAt: new Date(this.opts.clock.now()).toISOString() })
      await this.opts.lifecycle.onOffline(name)
    }).catch(err => { this.opts.log('could not take an agent offline', { agent: name, ...errorFields(toStaccatoError(err)) }, 'warn') })
  }
}
