import { setTimeout as sleep } from 'node:timers/promises'
import type { Multiaddr } from '@multiformats/multiaddr'
import { AGENT_SIDE, CONTROL_PROTOCOL, ControlChannel, MAX_REGISTER_OUTCOMES, NetworkError, errorFields, toStaccatoError } from '../mesh/index.ts'
import type { AgentToCoordinator, CallMethod, CastMethod, ControlParams, CoordinatorToAgent, MeshNode, Params, Result } from '../mesh/index.ts'
import type { Executor } from './executor.ts'
import type { Journal } from './journal.ts'
import type { AgentHandlers } from './control-handlers.ts'

export interface ControlClientOptions {
  node: MeshNode
  /** The coordinator's addresses, or its replicas' (one of them, the leader, accepts the agent): tried in turn. */
  coordinators: Multiaddr[]
  registration: () => Omit<ControlParams<'register'>, 'active' | 'running' | 'outcomes'>
  executor: Executor
  journal: Journal
  /** What the coordinator's calls and casts run: one handler per method. */
  handlers: AgentHandlers
  /** Distributions this agent takes part in, named at registration. */
  activeDistributions: () => string[]
  /** Runs after every registration, beside the executor's deliveries (the swarm's journaled outcomes). */
  afterRegister?: () => Promise<void>
  /** Free bytes per volume, sent with each heartbeat. */
  volumeSpace?: () => Promise<Array<{ name: string, free: number }>>
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** Upper bound for the reconnect delay; it starts at half a second and doubles. */
  maxBackoffMs?: number
  /**
   * The coordinator refused this agent for a reason that retrying cannot fix
   * (a bad join token, a name bound to another key): stop with a clear error
   * instead of retrying in a loop.
   */
  onFatal: (err: Error) => void
}

const HEARTBEAT_FALLBACK_MS = 5_000

/** How the coordinator refuses an agent (a bad join token, a name bound to another key, a malformed registration). */
const REFUSALS: ReadonlySet<string> = new Set(['permission_denied', 'invalid_argument'])

/**
 * The agent's end of /staccato/control/1. The agent dials the coordinator (so
 * agents behind NAT work), registers, heartbeats, runs what it is told, and
 * redials with backoff and jitter whenever the connection drops. With
 * several addresses (coordinator replicas), a failed session moves on to
 * the next one at once; the backoff grows only once every address has
 * failed in a row.
 */
export class ControlClient {
  private readonly opts: ControlClientOptions
  private channel?: ControlChannel<AgentToCoordinator, CoordinatorToAgent>
  private stopped = false
  private readonly stopController = new AbortController()
  private loop?: Promise<void>
  /** The address of opts.coordinators in use. */
  private current = 0
  /** Resolves the first time registration succeeds (for start-up and tests). */
  readonly registered: Promise<void>
  private markRegistered!: () => void

  constructor (opts: ControlClientOptions) {
    this.opts = opts
    this.registered = new Promise(resolve => { this.markRegistered = resolve })
  }

  start (): void {
    this.loop ??= this.run()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.stopController.abort()
    this.channel?.close()
    await this.loop
  }

  async call<M extends CallMethod<AgentToCoordinator>> (method: M, params: Params<AgentToCoordinator, M>): Promise<Result<AgentToCoordinator, M>> {
    if (this.channel === undefined) throw new NetworkError('not connected to the coordinator')
    return await this.channel.call(method, params)
  }

  cast<M extends CastMethod<AgentToCoordinator>> (method: M, params: Params<AgentToCoordinator, M>): void {
    // Casts (progress) are fire-and-forget by design: one lost with a broken channel is superseded by the next, or by the state sent at re-registration.
    void this.channel?.cast(method, params).catch(() => {})
  }

  private async run (): Promise<void> {
    let backoff = 500
    let failures = 0
    const max = this.opts.maxBackoffMs ?? 15_000
    while (!this.stopped) {
      try {
        await this.session()
        backoff = 500
        failures = 0
      } catch (err) {
        if (this.stopped) break
        const e = toStaccatoError(err)
        // Only the coordinator's refusal is final; anything else (a bug on either side included) is worth a redial.
        if (REFUSALS.has(e.code)) {
          this.stopped = true
          this.opts.onFatal(e)
          break
        }
        const n = this.opts.coordinators.length
        // One or two failures are a coordinator restarting; more is a wrong or unreachable address, for the operator to see.
        this.opts.log('coordinator unreachable; will retry', { coordinator: this.address().toString(), attempts: ++failures, ...errorFields(e), retryInMs: backoff }, failures >= 3 * n ? 'warn' : 'info')
        this.current = (this.current + 1) % n
        // Another replica may be up (or lead): try it at once, and wait only after a round of the list.
        if (failures % n !== 0) continue
      }
      if (this.stopped) break
      // Rejects only when stop() aborts the wait; the loop then sees `stopped`.
      await sleep(backoff * (0.5 + Math.random() / 2), undefined, { signal: this.stopController.signal }).catch(() => {})
      backoff = Math.min(backoff * 2, max)
    }
  }

  private address (): Multiaddr {
    return this.opts.coordinators[this.current]
  }

  /** A heartbeat goes out even when the volumes cannot be measured: it is what keeps the agent online. */
  private async beat (): Promise<void> {
    const volumes = await this.opts.volumeSpace?.().catch(() => undefined)
    this.cast('heartbeat', volumes !== undefined ? { active: this.opts.executor.active(), volumes } : { active: this.opts.executor.active() })
  }

  private async session (): Promise<void> {
    const { node, executor, journal, log } = this.opts
    const stream = await node.dialProtocol(this.address(), CONTROL_PROTOCOL, { signal: AbortSignal.any([this.stopController.signal, AbortSignal.timeout(10_000)]) })
    const channel = new ControlChannel(stream, AGENT_SIDE, {
      table: { handlers: this.opts.handlers, context: () => undefined },
      onInternalError: (method, err) => { log('a coordinator call failed on a bug', { method, ...errorFields(err) }) }
    })
    let heartbeat: NodeJS.Timeout | undefined
    try {
      // Everything this agent holds goes inside the registration, and the coordinator settles it before it
      // schedules anything here: outcomes that finished while it was away, and attempts still running.
      const outcomes = await executor.journaledOutcomes()
      const sent = outcomes.slice(0, MAX_REGISTER_OUTCOMES)
      const active = [...new Set([...executor.active(), ...outcomes.map(o => o.transferId), ...this.opts.activeDistributions()])]
      const reply = await channel.call('register', { ...this.opts.registration(), active, running: executor.runningAttempts(), outcomes: sent })
      log('registered with the coordinator', { coordinator: this.address().toString(), outcomesSettled: reply.settled?.length ?? 0 })
      const settled = new Set(reply.settled ?? [])
      for (const o of sent) if (settled.has(o.transferId)) await executor.acknowledged(o)
      // Reports go out only once registered: one sent before would be refused and kept until the next reconnect.
      this.channel = channel
      this.markRegistered()
      // Distribution outcomes that finished while the coordinator was away.
      void this.opts.afterRegister?.().catch(err => log('could not deliver journaled outcomes', { error: toStaccatoError(err).message }))
      // Outcomes the registration did not carry or settle, and any that ended while it was under way.
      for (const entry of await journal.all()) {
        if (entry.outcome !== undefined) await executor.deliver(entry)
      }
      heartbeat = setInterval(() => { void this.beat() }, reply.heartbeatMs ?? HEARTBEAT_FALLBACK_MS)
      const failure = await channel.closed
      if (failure !== undefined) throw failure
      if (!this.stopped) log('control connection closed by the coordinator')
    } finally {
      clearInterval(heartbeat)
      if (this.channel === channel) this.channel = undefined
      channel.close()
    }
  }
}
