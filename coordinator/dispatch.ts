import type { PrivateKey } from '@libp2p/interface'
import { AgentOfflineError, parseLocation, signTicket, toStaccatoError } from '../mesh/index.ts'
import type { ControlMethod, ControlParams, ErrorInfo, Job, StaccatoError } from '../mesh/index.ts'
import type { TransferStore } from './store.ts'
import type { TransferRecord } from './model.ts'
import { TERMINAL_STATES } from './model.ts'
import { defaultExecutor, schedulerView } from './scheduler/index.ts'
import type { Scheduler } from './scheduler/index.ts'
import type { AgentRegistry } from './registry.ts'
import { seedAgent } from './distribution.ts'
import type { DistributionManager } from './distribution.ts'

export interface DispatcherOptions {
  store: TransferStore
  registry: AgentRegistry
  distributions: DistributionManager
  scheduler: Scheduler
  /** The coordinator's key: it signs the tickets agents check. */
  key: PrivateKey
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** First retry delay; each retry doubles it, with jitter, up to retryMaxMs. */
  retryBaseMs: number
  retryMaxMs: number
  /** How long after start-up an in-flight transfer waits for its agent to come back before it is requeued. */
  graceMs: number
  ticketTtlSeconds: number
  tickMs: number
  /** Told how long each scheduling pass took (for the scheduling latency histogram). */
  onTick?: (seconds: number) => void
}

const IN_FLIGHT = ['scheduled', 'active', 'verifying'] as const

/**
 * Turns scheduler decisions into work on agents, and agent reports into
 * state changes. Every change goes through the store, which writes it and
 * its event in one synced batch.
 */
export class Dispatcher {
  private readonly opts: DispatcherOptions
  private timer?: NodeJS.Timeout
  private ticking = false
  private readonly startedAt = Date.now()

  constructor (opts: DispatcherOptions) {
    this.opts = opts
  }

  start (): void {
    this.timer = setInterval(() => { void this.tick() }, this.opts.tickMs)
  }

  stop (): void {
    clearInterval(this.timer)
  }

  /** Runs one scheduling pass now (the timer also runs them). */
  async tick (): Promise<void> {
    if (this.ticking) return
    this.ticking = true
    const started = performance.now()
    try {
      await this.requeueOrphans()
      const { store, registry, scheduler } = this.opts
      const view = schedulerView(store, {
        isOnline: agent => registry.isOnline(agent),
        executorFor: rec => {
          // A distribution is started by its seed; destinations that are offline join when they come back.
          if (rec.destinations !== undefined) {
            const seed = seedAgent(rec)
            return seed !== undefined && registry.isOnline(seed) ? seed : undefined
          }
          // A transfer waits in the queue while any agent it needs is offline, rather than burning its retries.
          return rec.agents.every(a => registry.isOnline(a)) ? defaultExecutor(rec) : undefined
        }
      })
      for (const d of scheduler.decide(view)) {
        const rec = store.get(d.id)
        if (rec === undefined) continue
        const scheduled = await store.transition(d.id, 'scheduled', { executor: d.executor, attempt: rec.attempt + 1, notBefore: undefined }, { from: ['queued'] })
        if (scheduled.destinations !== undefined) void this.startDistribution(scheduled)
        else void this.dispatch(scheduled)
      }
    } catch (err) {
      this.opts.log('scheduling pass failed', { error: String(err) }, 'error')
    } finally {
      this.ticking = false
      this.opts.onTick?.((performance.now() - started) / 1000)
    }
  }

  private async dispatch (rec: TransferRecord): Promise<void> {
    const { registry, store } = this.opts
    const executor = rec.executor as string
    try {
      const job = await this.job(rec, executor)
      await registry.call(executor, 'execute', job)
      await store.transition(rec.id, 'active', {}, { from: ['scheduled'] }).catch(() => {})
      this.opts.log('transfer dispatched', { transferId: rec.id, agent: executor, attempt: rec.attempt })
    } catch (err) {
      await this.fail(rec.id, rec.attempt, toStaccatoError(err).toJSON())
    }
  }

  private async startDistribution (rec: TransferRecord): Promise<void> {
    try {
      await this.opts.distributions.start(rec)
      this.opts.log('distribution started', { transferId: rec.id, seed: rec.executor, destinations: rec.destinations?.length })
    } catch (err) {
      await this.fail(rec.id, rec.attempt, toStaccatoError(err).toJSON())
    }
  }

  private async job (rec: TransferRecord, executor: string): Promise<Job> {
    const job: Job = {
      transferId: rec.id,
      attempt: rec.attempt,
      source: rec.source,
      destination: rec.destination,
      checksum: rec.checksum
    }
    const source = parseLocation(rec.source, 'source')
    // A plug-in source named `via` another agent is read there (e.g. an https:// URL only
    // that agent's network reaches) and streamed to the executor like a file in a volume.
    const sourceAgent = source.kind === 'agent' ? source.agent : source.via
    if (sourceAgent !== undefined && sourceAgent !== executor) {
      const holder = this.opts.store.getAgent(sourceAgent)
      const reader = this.opts.store.getAgent(executor)
      if (holder === undefined || reader === undefined) throw new AgentOfflineError(`agent '${holder === undefined ? sourceAgent : executor}' is unknown`)
      job.sourcePeer = { peerId: holder.peerId, addrs: holder.addrs }
      job.ticket = await signTicket(this.opts.key, {
        v: 1, tid: rec.id, src: rec.source, off: 0, rdr: reader.peerId, exp: Math.floor(Date.now() / 1000) + this.opts.ticketTtlSeconds
      })
    }
    return job
  }

  /** Agent calls (report) and casts (progress, heartbeat). */
  async onCall (agent: string, method: ControlMethod, params: unknown): Promise<unknown> {
    if (method === 'swarmReport') {
      await this.opts.distributions.onReport(agent, params as ControlParams<'swarmReport'>)
      return {}
    }
    if (method !== 'report') throw new Error(`coordinator does not take '${method}' calls`)
    const r = params as ControlParams<'report'>
    const rec = this.opts.store.get(r.transferId)
    // Stale or unknown: acknowledge so the agent drops it; there is nothing to change.
    if (rec === undefined || rec.attempt !== r.attempt || rec.executor !== agent || TERMINAL_STATES.has(rec.state)) {
      this.opts.log('stale report acknowledged and ignored', { transferId: r.transferId, agent, attempt: r.attempt, outcome: r.outcome, state: rec?.state, currentAttempt: rec?.attempt })
      return {}
    }
    const progress = r.bytesDone !== undefined ? { ...rec.progress, bytesDone: r.bytesDone, bytesTotal: r.bytesTotal ?? rec.progress.bytesTotal } : rec.progress
    if (r.outcome === 'verifying') {
      await this.opts.store.transition(rec.id, 'verifying', { progress }, { from: ['active'] }).catch(() => {})
    } else if (r.outcome === 'succeeded') {
      // The 'verifying' report may have been lost while the coordinator was away: the record still walks every state.
      if (rec.state === 'scheduled') await this.opts.store.transition(rec.id, 'active', {}, { from: ['scheduled'] })
      if (rec.state !== 'verifying') await this.opts.store.transition(rec.id, 'verifying', { progress }, { from: ['active'] })
      await this.opts.store.transition(rec.id, 'succeeded', { sha256: r.sha256, progress: { ...progress, rate: 0, eta: 0 } }, { from: ['scheduled', 'active', 'verifying'] })
      this.opts.log('transfer succeeded', { transferId: rec.id, agent, sha256: r.sha256 })
    } else {
      await this.fail(rec.id, r.attempt, r.error ?? { code: 'internal', message: 'agent reported a failure without an error', retryable: true })
    }
    return {}
  }

  onCast (agent: string, method: ControlMethod, params: unknown): void {
    if (method === 'swarmProgress') this.opts.distributions.onProgress(agent, params as ControlParams<'swarmProgress'>)
    if (method !== 'progress') return
    const p = params as ControlParams<'progress'>
    const rec = this.opts.store.get(p.transferId)
    if (rec === undefined || rec.attempt !== p.attempt || rec.executor !== agent || (rec.state !== 'active' && rec.state !== 'scheduled')) return
    void this.opts.store.setProgress(rec.id, { bytesDone: p.bytesDone, bytesTotal: p.bytesTotal }).catch(() => {})
  }

  /** An agent (re)registered, naming the transfers it still runs or has outcomes for. */
  onOnline (agent: string, claimed: string[]): void {
    const claims = new Set(claimed)
    void (async () => {
      for (const id of claims) {
        const rec = this.opts.store.get(id)
        if (rec === undefined || rec.state === 'canceled' || rec.state === 'failed') {
          this.opts.registry.cast(agent, 'cancel', { transferId: id })
        } else if (rec.state === 'scheduled' && rec.executor === agent) {
          await this.opts.store.transition(id, 'active', {}, { from: ['scheduled'] }).catch(() => {})
        }
      }
      this.opts.distributions.onAgentOnline(agent)
      for (const state of IN_FLIGHT) {
        for (const rec of this.opts.store.inState(state)) {
          if (rec.executor === agent && !claims.has(rec.id) && !isRunningDistribution(rec)) {
            await this.fail(rec.id, rec.attempt, new AgentOfflineError(`agent '${agent}' restarted and lost attempt ${rec.attempt}`).toJSON())
          }
        }
      }
    })().catch(err => this.opts.log('could not reconcile agent', { agent, error: String(err) }, 'warn'))
  }

  onOffline (agent: string): void {
    void this.requeueAgent(agent, `agent '${agent}' went offline`)
  }

  onCancel (rec: TransferRecord): void {
    if (rec.destinations !== undefined) this.opts.distributions.onCanceled(rec)
    else if (rec.executor !== undefined) this.opts.registry.cast(rec.executor, 'cancel', { transferId: rec.id })
  }

  private async requeueAgent (agent: string, why: string): Promise<void> {
    for (const state of IN_FLIGHT) {
      for (const rec of this.opts.store.inState(state)) {
        if (rec.executor === agent && !isRunningDistribution(rec)) await this.fail(rec.id, rec.attempt, new AgentOfflineError(why).toJSON())
      }
    }
  }

  /** After a coordinator restart, in-flight transfers whose agent never came back go back to the queue. */
  private async requeueOrphans (): Promise<void> {
    if (Date.now() - this.startedAt < this.opts.graceMs) return
    for (const state of IN_FLIGHT) {
      for (const rec of this.opts.store.inState(state)) {
        if (rec.executor !== undefined && !this.opts.registry.isOnline(rec.executor) && !isRunningDistribution(rec)) {
          await this.fail(rec.id, rec.attempt, new AgentOfflineError(`agent '${rec.executor}' is offline`).toJSON())
        }
      }
    }
  }

  /** A retryable error with retries left requeues with backoff and jitter; anything else fails the transfer. */
  private async fail (id: string, attempt: number, error: ErrorInfo): Promise<void> {
    const rec = this.opts.store.get(id)
    if (rec === undefined || rec.attempt !== attempt || TERMINAL_STATES.has(rec.state) || rec.state === 'queued') return
    const lastError = { ...error, at: new Date().toISOString(), attempt }
    const retriesLeft = rec.attempt <= rec.retries
    try {
      if (error.retryable && retriesLeft) {
        const delay = Math.min(this.opts.retryBaseMs * 2 ** (rec.attempt - 1), this.opts.retryMaxMs) * (0.5 + Math.random() / 2)
        await this.opts.store.transition(id, 'queued', { lastError, notBefore: Date.now() + Math.round(delay) })
        this.opts.log('transfer requeued', { transferId: id, code: error.code, error: error.message, retryInMs: Math.round(delay) }, 'warn')
      } else {
        await this.opts.store.transition(id, 'failed', { lastError })
        this.opts.log('transfer failed', { transferId: id, code: error.code, error: error.message }, 'warn')
      }
    } catch (err) {
      const e: StaccatoError = toStaccatoError(err)
      this.opts.log('could not record a failure', { transferId: id, error: e.message }, 'error')
    }
  }
}

/** A running distribution outlives any one participant going away: each rejoins when it reconnects. */
function isRunningDistribution (rec: TransferRecord): boolean {
  return rec.destinations !== undefined && rec.state !== 'scheduled'
}
