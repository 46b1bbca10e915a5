import { AgentOfflineError } from '../mesh/index.ts'
import type { AgentToCoordinator, CallMethod, CastMethod, ControlChannel, CoordinatorToAgent, Params, Result } from '../mesh/index.ts'
import type { Clock } from './clock.ts'

/** The coordinator's end of one agent's control stream, with what a handler sees of its peer. */
export type AgentChannel = ControlChannel<CoordinatorToAgent, AgentToCoordinator, AgentConnection>

/** Who sent a control message: the handlers past registration read only `agent`. */
export interface AgentContext { readonly agent: string }

/** One accepted control stream; `name` is set once its registration succeeded. */
export interface AgentConnection extends AgentContext {
  readonly peerId: string
  readonly channel: AgentChannel
  name?: string
}

/** What the dispatcher and the distribution manager need of the connected agents. */
export interface AgentControl {
  isOnline: (agent: string) => boolean
  call: <M extends CallMethod<CoordinatorToAgent>>(agent: string, method: M, params: Params<CoordinatorToAgent, M>) => Promise<Result<CoordinatorToAgent, M>>
  /** Fire-and-forget; a cast an offline agent misses is settled when it registers again (reconcile). */
  cast: <M extends CastMethod<CoordinatorToAgent>>(agent: string, method: M, params: Params<CoordinatorToAgent, M>) => void
  /** Runs fn after every earlier registration and disconnection of this agent, and before any later one. */
  exclusive: <T>(agent: string, fn: () => Promise<T>) => Promise<T>
}

interface Session {
  channel: AgentChannel
  peerId: string
  lastSeen: number
  /** Free bytes per volume, from the latest heartbeat that carried them. */
  free?: Record<string, number>
}

/** What the registry knows of a connected agent between store writes (heartbeats are not written). */
export interface AgentLive { lastSeenAt: string, free?: Record<string, number> }

/**
 * The connected agents by name and the control channel to each. The
 * registry adds and drops sessions; the dispatcher and the distribution
 * manager only talk through them, so neither needs the registry (nor the
 * registry them).
 */
export class AgentSessions implements AgentControl {
  private readonly sessions = new Map<string, Session>()
  /**
   * Per agent, its registrations, its going offline and requeues of its work
   * run one at a time: a late 'offline' must not requeue what a registration
   * just settled.
   */
  private readonly lifecycles = new Map<string, Promise<unknown>>()
  private readonly clock: Clock

  constructor (clock: Clock) {
    this.clock = clock
  }

  isOnline (agent: string): boolean {
    return this.sessions.has(agent)
  }

  exclusive<T> (agent: string, fn: () => Promise<T>): Promise<T> {
    const ran = (this.lifecycles.get(agent) ?? Promise.resolve()).then(fn)
    // The failure is the caller's (ran); the next lifecycle step only waits for this one to settle.
    const tail = ran.then(() => undefined, () => undefined)
    this.lifecycles.set(agent, tail)
    void tail.then(() => { if (this.lifecycles.get(agent) === tail) this.lifecycles.delete(agent) })
    return ran
  }

  async call<M extends CallMethod<CoordinatorToAgent>> (agent: string, method: M, params: Params<CoordinatorToAgent, M>): Promise<Result<CoordinatorToAgent, M>> {
    const s = this.sessions.get(agent)
    if (s === undefined) throw new AgentOfflineError(`agent '${agent}' is not connected`)
    return await s.channel.call(method, params)
  }

  cast<M extends CastMethod<CoordinatorToAgent>> (agent: string, method: M, params: Params<CoordinatorToAgent, M>): void {
    // A cast lost with a broken channel is settled by the agent's next registration (reconcile): nothing to do here.
    void this.sessions.get(agent)?.channel.cast(method, params).catch(() => undefined)
  }

  channel (agent: string): AgentChannel | undefined {
    return this.sessions.get(agent)?.channel
  }

  /** Registers a session, replacing any other (the caller closes the one it replaces). */
  open (agent: string, channel: AgentChannel, peerId: string): void {
    this.sessions.set(agent, { channel, peerId, lastSeen: this.clock.now() })
  }

  /** Drops the agent's session, only if it still is `channel` when given. Returns whether it dropped one. */
  drop (agent: string, channel?: AgentChannel): boolean {
    const s = this.sessions.get(agent)
    if (s === undefined || (channel !== undefined && s.channel !== channel)) return false
    this.sessions.delete(agent)
    return true
  }

  /** Notes that the agent was heard from on `channel`; false when that channel is no longer its session. */
  touch (agent: string, channel: AgentChannel): boolean {
    const s = this.sessions.get(agent)
    if (s?.channel !== channel) return false
    s.lastSeen = this.clock.now()
    return true
  }

  noteSpace (agent: string, volumes: Array<{ name: string, free: number }>): void {
    const s = this.sessions.get(agent)
    if (s === undefined) return
    const free: Record<string, number> = Object.create(null) as Record<string, number>
    for (const v of volumes) free[v.name] = v.free
    s.free = free
  }

  live (agent: string): AgentLive | undefined {
    const s = this.sessions.get(agent)
    return s !== undefined ? { lastSeenAt: new Date(s.lastSeen).toISOString(), free: s.free } : undefined
  }

  /** Sessions not heard from since `deadline` (epoch ms). */
  silentSince (deadline: number): Array<{ agent: string, channel: AgentChannel }> {
    return [...this.sessions].filter(([, s]) => s.lastSeen < deadline).map(([agent, s]) => ({ agent, channel: s.channel }))
  }

  all (): AgentChannel[] {
    return [...this.sessions.values()].map(s => s.channel)
  }
}
