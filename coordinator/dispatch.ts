import type { PrivateKey } from '@libp2p/interface'
import { AgentOfflineError, errorFields, parseLocation, signTicket, toStaccatoError } from '../mesh/index.ts'
import type { ControlParams, ErrorInfo, Job, StaccatoError } from '../mesh/index.ts'
import type { TransferStore } from './store.ts'
import type { TransferRecord, TransferState } from './model.ts'
import { TERMINAL_STATES } from './model.ts'
import { InvalidStateError } from './store-errors.ts'
import { defaultExecutor, schedulerView } from './scheduler/index.ts'
import type { Scheduler } from './scheduler/index.ts'
import type { AgentControl } from './agent-sessions.ts'
import type { AgentLifecycle, PartHandlers } from './registry.ts'
import { seedAgent } from './distribution.ts'
import { WaitingTracker } from './waiting.ts'
import { passDelay } from './pass-pacing.ts'
import { storeMissed } from './store-missed.ts'
import type { Clock, ClockTimer } from './clock.ts'
import type { DistributionManager } from './distribution.ts'

export interface DispatcherOptions {
  store: TransferStore
  agents: AgentControl
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
  clock: Clock
  /** Told how long each scheduling pass took (for the scheduling latency histogram). */
  onTick?: (seconds: number) => void
}

const IN_FLIGHT = ['scheduled', 'active', 'verifying'] as const

/** The next state on the way to succeeded, from each state that is not terminal. */
const TOWARDS_SUCCESS: Partial<Record<TransferState, TransferState>> = { queued: 'scheduled', scheduled: 'active', active: 'verifying', verifying: 'succeeded' }

type Report = ControlParams<'report'>

/**
 * Turns scheduler decisions into work on agents, and agent reports into
 * state changes. Every change goes through the store, which writes it and
 * its event in one synced batch.
 */
export class Dispatcher implements AgentLifecycle {
  private readonly opts: DispatcherOptions
  /** What an executor reports: its attempts' outcomes (calls) and progress (casts). */
  readonly handlers: Pick<PartHandlers, 'report' | 'progress' | 'treeFiles'> = {
    report: async (r, { agent }) => {
      await this.applyReport(agent, r)
      return {}
    },
    treeFiles: async (p, { agent }) => {
      const rec = this.opts.store.get(p.transferId)
      // Only the executor's current attempt writes a tree's files; anything else is acknowledged and dropped.
      if (rec === undefined || rec.executor !== agent || rec.attempt !== p.attempt || TERMINAL_STATES.has(rec.state)) return {}
      await this.opts.store.putTreeFiles(rec.id, p.files)
      return {}
    },
    progress: async (p, { agent }) => { this.onProgress(agent, p) }
  }
  /** The next deadline's timer: a retry's back-off expiring, the start-up grace ending, a waiting scan due. */
  private timer?: ClockTimer
  private ticking = false
  /** A pass was asked for while one ran: it runs again when done, on what changed meanwhile. */
  private again = false
  private soon = false
  /** The last pass: how long its scheduler's decide() took, and when the pass ended (performance.now(), ms), for passDelay. */
  private lastPassMs = 0
  private lastPassEnd = 0
  private started = false
  /** When this process started dispatching: the grace period for agents to come back runs from here (a new leader gives them one too). */
  private startedAt: number
  private readonly waiting: WaitingTracker
  private readonly kick = (): void => { this.requestPass() }

  constructor (opts: DispatcherOptions) {
    this.opts = opts
    this.startedAt = opts.clock.now()
    this.waiting = new WaitingTracker({
      clock: opts.clock,
      store: opts.store,
      isOnline: agent => opts.agents.isOnline(agent),
      needs: rec => {
        // A distribution starts with its seed; its destinations join whenever they are back.
        if (rec.destinations !== undefined) return [seedAgent(rec)].filter(a => a !== undefined)
        const executor = defaultExecutor(rec)
        return executor !== undefined && !rec.agents.includes(executor) ? [...rec.agents, executor] : rec.agents
      },
      log: opts.log
    })
  }

  /**
   * Scheduling passes run when something they decide on changed — a
   * transfer submitted, an outcome or a cancel (every state change), an
   * agent online or offline — and at the next deadline, not on a fixed tick.
   */
  start (): void {
    if (this.started) return
    this.started = true
    this.startedAt = this.opts.clock.now()
    const { store } = this.opts
    store.on('created', this.kick)
    store.on('transition', this.kick)
    store.on('agent', this.kick)
    store.on('removed', this.kick)
    this.requestPass()
  }

  stop (): void {
    this.started = false
    const { store } = this.opts
    store.off('created', this.kick)
    store.off('transition', this.kick)
    store.off('agent', this.kick)
    store.off('removed', this.kick)
    this.timer?.cancel()
  }

  /** Asks for a pass soon; many requests before it runs make one pass. */
  private requestPass (): void {
    if (!this.started) return
    if (this.ticking) {
      this.again = true
      return
    }
    if (this.soon) return
    this.soon = true
    const run = (): void => {
      this.soon = false
      if (this.started) void this.tick()
    }
    // Out of the emitting write's call stack, and coalesced; after a long pass, paced (pass-pacing.ts). The pause
    // bounds the CPU passes take, not a decision's time: real time, not the clock's.
    const delay = passDelay(this.lastPassMs, performance.now() - this.lastPassEnd)
    if (delay > 0) setTimeout(run, delay)
    else setImmediate(run)
  }

  /** Runs one scheduling pass now (store events and deadlines also run them). */
  async tick (): Promise<void> {
    if (this.ticking) {
      this.again = true
      return
    }
    this.ticking = true
    const started = performance.now()
    let waitingDue: number | undefined
    try {
      await this.requeueOrphans()
      const { store, agents, scheduler } = this.opts
      const view = schedulerView(store, {
        now: this.opts.clock.now(),
        isOnline: agent => agents.isOnline(agent),
        executorFor: rec => {
          // A distribution is started by its seed; destinations that are offline join when they come back.
          if (rec.destinations !== undefined) {
            const seed = seedAgent(rec)
            return seed !== undefined && agents.isOnline(seed) ? seed : undefined
          }
          // A transfer waits in the queue while any agent it needs is offline, rather than burning its retries.
          return rec.agents.every(a => agents.isOnline(a)) ? defaultExecutor(rec) : undefined
        }
      })
      // Paced by the queue's reading alone (passDelay): the writes a pass awaits below are commits, not loop time.
      const reading = performance.now()
      const decisions = scheduler.decide(view)
      this.lastPassMs = performance.now() - reading
      for (const d of decisions) {
        const rec = store.get(d.id)
        if (rec === undefined) continue
        const scheduled = await store.transition(d.id, 'scheduled', { executor: d.executor, attempt: rec.attempt + 1, notBefore: undefined }, { from: ['queued'] }).catch((err: unknown) => {
          // The queue read is what has committed: a cancel not yet committed then is refused here, and the pass goes on.
          if (err instanceof InvalidStateError) return undefined
          throw err
        })
        if (scheduled === undefined) continue
        if (scheduled.destinations !== undefined) void this.startDistribution(scheduled)
        else void this.dispatch(scheduled)
      }
      // After the decisions: what was just scheduled does not wait any more.
      waitingDue = await this.waiting.scan()
    } catch (err) {
      this.opts.log('scheduling pass failed', { ...errorFields(toStaccatoError(err)) }, 'error')
    } finally {
      this.ticking = false
      this.lastPassEnd = performance.now()
      this.opts.onTick?.((this.lastPassEnd - started) / 1000)
    }
    if (this.again) {
      this.again = false
      this.requestPass()
    } else {
      this.armDeadline(waitingDue)
    }
  }

  /** Sets the one timer for the earliest thing a pass waits on; nothing else needs time to pass. */
  private armDeadline (waitingDue: number | undefined): void {
    this.timer?.cancel()
    if (!this.started) return
    const { clock, store } = this.opts
    const now = clock.now()
    let next = waitingDue ?? Infinity
    if (now - this.startedAt < this.opts.graceMs) next = Math.min(next, this.startedAt + this.opts.graceMs)
    // The queue's own array (one copy), not inState's walk of the state set: this runs after every pass.
    for (const rec of store.queuedInOrder()) {
      if (rec.notBefore !== undefined && rec.notBefore > now) next = Math.min(next, rec.notBefore)
    }
    if (next === Infinity) return
    this.timer = clock.setTimeout(() => { this.requestPass() }, Math.max(0, next - now))
  }

  private async dispatch (rec: TransferRecord): Promise<void> {
    const { agents, store } = this.opts
    const executor = rec.executor as string
    try {
      const job = await this.job(rec, executor)
      await agents.call(executor, 'execute', job)
      await store.transition(rec.id, 'active', {}, { from: ['scheduled'] }).catch(this.storeMissed('could not record the transfer as active', rec))
      const now = store.get(rec.id)
      if (now === undefined || TERMINAL_STATES.has(now.state)) {
        // Canceled, or succeeded through an earlier attempt's outcome, while this one was on its way: a cancel sent
        // before the job arrived found nothing to stop.
        agents.cast(executor, 'cancel', { transferId: rec.id })
        return
      }
      this.opts.log('transfer dispatched', { transferId: rec.id, agent: executor, attempt: rec.attempt })
    } catch (err) {
      const e = toStaccatoError(err)
      this.opts.log('could not dispatch', { transferId: rec.id, agent: executor, attempt: rec.attempt, ...errorFields(e) })
      await this.fail(rec.id, rec.attempt, e.toJSON())
    }
  }

  private async startDistribution (rec: TransferRecord): Promise<void> {
    try {
      await this.opts.distributions.start(rec)
      this.opts.log('distribution started', { transferId: rec.id, seed: rec.executor, destinations: rec.destinations?.length })
    } catch (err) {
      const e = toStaccatoError(err)
      this.opts.log('could not start a distribution', { transferId: rec.id, ...errorFields(e) })
      await this.fail(rec.id, rec.attempt, e.toJSON())
    }
  }

  private async job (rec: TransferRecord, executor: string): Promise<Job> {
    const job: Job = {
      transferId: rec.id,
      attempt: rec.attempt,
      source: rec.source,
      destination: rec.destination,
      checksum: rec.checksum,
      checksumMode: rec.checksumMode,
      overwrite: rec.overwrite,
      tree: rec.tree
    }
    // Only when set: an agent from before multi-stream transfers refuses a job with a field it does not know.
    if (rec.streams !== undefined) job.streams = rec.streams
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
        v: 1, tid: rec.id, src: rec.source, off: 0, rdr: reader.peerId, exp: Math.floor(this.opts.clock.now() / 1000) + this.opts.ticketTtlSeconds
      })
    }
    return job
  }

  /**
   * Applies an agent's report. A succeeded outcome is taken whenever it
   * arrives — after the record was requeued, or while a later attempt runs —
   * unless the user canceled or deleted the transfer meanwhile; a terminal
   * state never changes. Anything else counts only for the current attempt.
   */
  private async applyReport (agent: string, r: Report): Promise<void> {
    const rec = this.opts.store.get(r.transferId)
    const ignored = (why: string): void => {
      this.opts.log('report acknowledged and ignored', { transferId: r.transferId, agent, attempt: r.attempt, outcome: r.outcome, why, state: rec?.state, currentAttempt: rec?.attempt })
    }
    if (rec === undefined) return ignored('no such transfer (deleted?)')
    if (TERMINAL_STATES.has(rec.state)) return ignored(`the transfer is ${rec.state}`)
    if (rec.executor !== agent || rec.destinations !== undefined) return ignored('not the executor of this transfer')
    if (r.outcome === 'succeeded') {
      const mode = rec.checksumMode ?? 'sha256'
      // A tree has no one digest: each of its files was checked against the holder's on the agent.
      if (mode !== 'none' && r[mode] === undefined && r.files === undefined) return ignored(`a success without a ${mode} digest`)
      if (rec.checksum !== undefined && rec.checksum.value !== r.sha256) return ignored(`digest ${r.sha256} is not the expected ${rec.checksum.value}`)
      await this.succeed(agent, rec.id, r)
      return
    }
    if (rec.attempt !== r.attempt) return ignored('stale: from an earlier attempt')
    if (r.outcome === 'verifying') {
      const progress = { ...rec.progress, bytesDone: r.bytesDone ?? rec.progress.bytesDone, bytesTotal: r.bytesTotal ?? rec.progress.bytesTotal }
      await this.opts.store.transition(rec.id, 'verifying', { progress }, { from: ['active'] }).catch(this.storeMissed('could not record the transfer as verifying', rec))
    } else {
      await this.fail(rec.id, r.attempt, r.error ?? { code: 'internal', message: 'agent reported a failure without an error', retryable: true }, r)
    }
  }

  /**
   * Walks the record to succeeded through every state (queued → scheduled →
   * active → verifying → succeeded), so the feed tells the same story
   * whichever report got lost. Each step is checked against the state it
   * starts from; a concurrent change (the scheduler picking the record up)
   * is re-read and walked on from, a bounded number of times.
   */
  private async succeed (agent: string, id: string, r: Report): Promise<void> {
    const { store } = this.opts
    for (let step = 0; step < 8; step++) {
      const rec = store.get(id)
      if (rec === undefined || TERMINAL_STATES.has(rec.state)) return
      const progress = { ...rec.progress, bytesDone: r.bytesDone ?? rec.progress.bytesDone, bytesTotal: r.bytesTotal ?? rec.progress.bytesTotal, ...(r.files !== undefined ? { files: r.files } : {}) }
      const next = TOWARDS_SUCCESS[rec.state]
      if (next === undefined) return
      const patch: Partial<TransferRecord> = next === 'succeeded'
        ? { sha256: r.sha256, blake3: r.blake3, progress: { ...progress, rate: 0, eta: 0 } }
        : next === 'scheduled' ? { executor: agent, notBefore: undefined } : next === 'verifying' ? { progress } : {}
      try {
        await store.transition(id, next, patch, { from: [rec.state] })
      } catch (err) {
        if (err instanceof InvalidStateError) continue
        throw err
      }
      if (next === 'succeeded') {
        this.opts.log('transfer succeeded', { transferId: id, agent, sha256: r.sha256, blake3: r.blake3, attempt: rec.attempt, reportedAttempt: r.attempt })
        // A later attempt may be running on the agent: it has nothing left to do.
        if (r.attempt !== rec.attempt) this.opts.agents.cast(agent, 'cancel', { transferId: id })
        return
      }
    }
    throw new InvalidStateError(`transfer ${id} kept changing while its success was being recorded`)
  }

  /**
   * An agent is registering and is not online yet: take the outcomes it
   * journaled, keep the attempts it still runs, and requeue those it lost,
   * all before the scheduler can see it. Resolves with the outcomes taken.
   */
  async onRegister (agent: string, held: ControlParams<'register'>): Promise<string[]> {
    const settled: string[] = []
    for (const r of held.outcomes ?? []) {
      try {
        await this.applyReport(agent, r)
        settled.push(r.transferId)
      } catch (err) {
        this.opts.log('could not apply a journaled outcome; the agent sends it again', { transferId: r.transferId, agent, ...errorFields(toStaccatoError(err)) })
      }
    }
    // An agent of an older version names only ids: take them as running the current attempt.
    const running = new Map((held.running ?? held.active.map(transferId => ({ transferId, attempt: this.opts.store.get(transferId)?.attempt ?? 0 }))).map(r => [r.transferId, r.attempt]))
    const claimed = new Set(held.active)
    const sent = new Set((held.outcomes ?? []).map(o => o.transferId))
    try {
      for (const [id, attempt] of running) {
        const rec = this.opts.store.get(id)
        if (rec === undefined || rec.executor !== agent || rec.attempt !== attempt || rec.destinations !== undefined) continue
        await this.keepRunning(agent, rec)
      }
      // In flight here but neither running nor with an outcome on the agent: it restarted, or the job never reached it.
      for (const state of IN_FLIGHT) {
        for (const rec of this.opts.store.inState(state)) {
          if (rec.executor !== agent || isRunningDistribution(rec) || running.get(rec.id) === rec.attempt) continue
          if (settled.includes(rec.id)) continue
          // An outcome beyond what one registration carries: it is reported right after.
          if (claimed.has(rec.id) && !running.has(rec.id) && !sent.has(rec.id)) continue
          await this.fail(rec.id, rec.attempt, new AgentOfflineError(`agent '${agent}' restarted and lost attempt ${rec.attempt}`).toJSON())
        }
      }
    } catch (err) {
      this.opts.log('could not reconcile agent', { agent, ...errorFields(toStaccatoError(err)) })
    }
    return settled
  }

  private onProgress (agent: string, p: ControlParams<'progress'>): void {
    const rec = this.opts.store.get(p.transferId)
    if (rec === undefined || rec.attempt !== p.attempt || rec.executor !== agent || (rec.state !== 'active' && rec.state !== 'scheduled')) return
    void this.opts.store.setProgress(rec.id, { bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, files: p.files }).catch(this.storeMissed('could not record progress', rec))
  }

  private storeMissed (what: string, rec: TransferRecord): (err: unknown) => void {
    return storeMissed(this.opts.log, what, { transferId: rec.id, agent: rec.executor, attempt: rec.attempt })
  }

  /** Requeued while the agent was away, but it kept running: the same attempt goes on, no new one. */
  private async keepRunning (agent: string, rec: TransferRecord): Promise<void> {
    const { store } = this.opts
    try {
      if (rec.state === 'queued') {
        await store.transition(rec.id, 'scheduled', { notBefore: undefined }, { from: ['queued'] })
        this.opts.log('transfer kept running on its agent', { transferId: rec.id, agent, attempt: rec.attempt })
      }
      if (rec.state === 'queued' || rec.state === 'scheduled') await store.transition(rec.id, 'active', {}, { from: ['scheduled'] })
    } catch (err) {
      // Canceled meanwhile, say: onOnline stops it on the agent.
      this.opts.log('could not keep a running transfer active', { transferId: rec.id, agent, ...errorFields(toStaccatoError(err)) }, 'warn')
    }
  }

  /** An agent is online again (what it held is settled): stop what it runs for transfers that ended, and rejoin its distributions. */
  onOnline (agent: string, held: ControlParams<'register'>): void {
    const running = new Set((held.running ?? []).map(r => r.transferId))
    for (const id of new Set(held.active)) {
      const rec = this.opts.store.get(id)
      if (rec === undefined || rec.state === 'canceled' || rec.state === 'failed' || (rec.state === 'succeeded' && running.has(id))) {
        this.opts.agents.cast(agent, 'cancel', { transferId: id })
      }
    }
    this.opts.distributions.onAgentOnline(agent)
    // What waited for this agent may start now (its record may not have changed, so no store event says so).
    this.requestPass()
  }

  async onOffline (agent: string): Promise<void> {
    await this.requeueAgent(agent, `agent '${agent}' went offline`)
    this.requestPass()
  }

  onCancel (rec: TransferRecord): void {
    if (rec.destinations !== undefined) this.opts.distributions.onCanceled(rec)
    else if (rec.executor !== undefined) this.opts.agents.cast(rec.executor, 'cancel', { transferId: rec.id })
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
    if (this.opts.clock.now() - this.startedAt < this.opts.graceMs) return
    const orphaned = new Set<string>()
    for (const state of IN_FLIGHT) {
      for (const rec of this.opts.store.inState(state)) {
        if (rec.executor !== undefined && !this.opts.agents.isOnline(rec.executor) && !isRunningDistribution(rec)) orphaned.add(rec.executor)
      }
    }
    for (const agent of orphaned) {
      // After any registration of the agent under way: what it settles must not be requeued behind its back.
      await this.opts.agents.exclusive(agent, async () => {
        if (!this.opts.agents.isOnline(agent)) await this.requeueAgent(agent, `agent '${agent}' is offline`)
      })
    }
  }

  /** A retryable error with retries left requeues with backoff and jitter; anything else fails the transfer. */
  private async fail (id: string, attempt: number, error: ErrorInfo, r?: Report): Promise<void> {
    const rec = this.opts.store.get(id)
    if (rec === undefined || rec.attempt !== attempt || TERMINAL_STATES.has(rec.state) || rec.state === 'queued') return
    const now = this.opts.clock.now()
    const patch: Partial<TransferRecord> = { lastError: { ...error, at: new Date(now).toISOString(), attempt } }
    // A tree's counts as it ended: which of its files failed is what the user looks at next.
    if (r?.files !== undefined) patch.progress = { ...rec.progress, files: r.files, bytesDone: r.bytesDone ?? rec.progress.bytesDone, bytesTotal: r.bytesTotal ?? rec.progress.bytesTotal }
    const retriesLeft = rec.attempt <= rec.retries
    try {
      if (error.retryable && retriesLeft) {
        const delay = Math.min(this.opts.retryBaseMs * 2 ** (rec.attempt - 1), this.opts.retryMaxMs) * (0.5 + Math.random() / 2)
        await this.opts.store.transition(id, 'queued', { ...patch, notBefore: now + Math.round(delay) }, { now })
        this.opts.log('transfer requeued', { transferId: id, code: error.code, error: error.message, retryInMs: Math.round(delay) }, 'warn')
      } else {
        await this.opts.store.transition(id, 'failed', patch, { now })
        this.opts.log('transfer failed', { transferId: id, code: error.code, error: error.message }, 'warn')
      }
    } catch (err) {
      const e: StaccatoError = toStaccatoError(err)
      this.opts.log('could not record a failure', { transferId: id, ...errorFields(e) }, 'error')
    }
  }
}

/** A running distribution outlives any one participant going away: each rejoins when it reconnects. */
function isRunningDistribution (rec: TransferRecord): boolean {
  return rec.destinations !== undefined && rec.state !== 'scheduled'
}
