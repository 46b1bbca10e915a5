import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { systemClock } from '../clock.ts'
import type { Clock, ClockTimer } from '../clock.ts'

export type Log = (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void

/** What a run did, for the log; an empty result (nothing done) is logged at debug only. */
export type JobResult = Record<string, number | string | boolean> | undefined

export interface Job {
  name: string
  intervalMs: number
  run: (signal: AbortSignal) => Promise<JobResult>
}

export interface JobStatus {
  name: string
  intervalMs: number
  runs: number
  failures: number
  lastRunAt?: string
  lastDurationMs?: number
  lastResult?: JobResult
  lastError?: string
}

interface Slot { job: Job, status: JobStatus, timer?: ClockTimer, running?: Promise<void>, rerun: boolean }

/**
 * The coordinator's background checks (the Tracker's cron-like jobs). Each
 * job runs on its own interval, never overlapping itself; the interval
 * counts from the end of a run, so a slow run delays the next one rather
 * than piling up. Jobs work in small batches and yield between them (see
 * `pause`), so none holds up the API.
 */
export class JobRunner {
  readonly #log: Log
  readonly #clock: Clock
  readonly #slots = new Map<string, Slot>()
  readonly #abort = new AbortController()
  #started = false

  constructor (log: Log, clock: Clock = systemClock) {
    this.#log = log
    this.#clock = clock
  }

  add (job: Job): void {
    if (this.#slots.has(job.name)) throw new TypeError(`job '${job.name}' is already added`)
    const slot: Slot = { job, status: { name: job.name, intervalMs: job.intervalMs, runs: 0, failures: 0 }, rerun: false }
    this.#slots.set(job.name, slot)
    if (this.#started) this.#schedule(slot, job.intervalMs)
  }

  start (): void {
    if (this.#started) return
    this.#started = true
    for (const slot of this.#slots.values()) this.#schedule(slot, slot.job.intervalMs)
    this.#log('info', 'background jobs started', Object.fromEntries([...this.#slots.values()].map(s => [s.job.name, `every ${s.job.intervalMs} ms`])))
  }

  /** Runs a job soon instead of at its next interval (e.g. new deliveries to make). */
  wake (name: string): void {
    const slot = this.#slots.get(name)
    if (slot === undefined || !this.#started || this.#abort.signal.aborted) return
    if (slot.running !== undefined) {
      slot.rerun = true
      return
    }
    this.#schedule(slot, 0)
  }

  /** Runs a job now and waits for it (tests, and an operator's "check now"). */
  async runNow (name: string): Promise<JobStatus> {
    const slot = this.#slots.get(name)
    if (slot === undefined) throw new TypeError(`no job '${name}'`)
    while (slot.running !== undefined) await slot.running
    slot.timer?.cancel()
    await this.#run(slot)
    return { ...slot.status }
  }

  status (): JobStatus[] {
    return [...this.#slots.values()].map(s => ({ ...s.status }))
  }

  /** Stops scheduling, aborts running jobs and waits for them. */
  async stop (): Promise<void> {
    this.#abort.abort()
    for (const slot of this.#slots.values()) slot.timer?.cancel()
    await Promise.all([...this.#slots.values()].map(async s => await s.running))
  }

  #schedule (slot: Slot, ms: number): void {
    slot.timer?.cancel()
    if (this.#abort.signal.aborted) return
    slot.timer = this.#clock.setTimeout(() => { void this.#run(slot) }, ms)
  }

  async #run (slot: Slot): Promise<void> {
    if (slot.running !== undefined || this.#abort.signal.aborted) return
    const { job, status } = slot
    const started = this.#clock.now()
    slot.rerun = false
    slot.running = (async () => {
      try {
        const result = await job.run(this.#abort.signal)
        status.lastResult = result
        const did = result !== undefined && Object.keys(result).length > 0
        this.#log(did ? 'info' : 'debug', 'background job ran', { job: job.name, ms: this.#clock.now() - started, ...result })
      } catch (err) {
        status.failures++
        status.lastError = (err as Error).message ?? String(err)
        if (!this.#abort.signal.aborted) this.#log('warn', 'background job failed', { job: job.name, error: status.lastError })
      } finally {
        status.runs++
        status.lastRunAt = new Date(started).toISOString()
        status.lastDurationMs = this.#clock.now() - started
      }
    })()
    await slot.running
    slot.running = undefined
    if (this.#started) this.#schedule(slot, slot.rerun ? 0 : job.intervalMs)
  }
}

/** Lets the API's requests run between two batches of a job. */
export async function pause (signal: AbortSignal): Promise<void> {
  await yieldToLoop()
  signal.throwIfAborted()
}
