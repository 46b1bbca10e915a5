import type { Clock, ClockTimer } from '../../coordinator/clock.ts'

interface Pending { at: number, seq: number, fn: () => void, canceled: boolean }

/** Timers one advance() may run at most: a timer that keeps setting itself again cannot spin the test for ever. */
const MAX_TIMERS_PER_ADVANCE = 100_000

/**
 * Virtual time for the coordinator's Clock seam. Time moves only when the
 * test calls advance(); a timer due now (a zero delay) runs at once, on the
 * next turn of the event loop, as it would with the system clock. Between
 * two timers advance() lets pending I/O callbacks and promises run, so that
 * what a timer starts (a store write, a delivery) can set the next one.
 */
export class FakeClock implements Clock {
  #now: number
  #seq = 0
  #timers: Pending[] = []
  #flushing = false

  constructor (start = Date.parse('2026-01-01T00:00:00.000Z')) {
    this.#now = start
  }

  now (): number {
    return this.#now
  }

  setTimeout (fn: () => void, ms: number): ClockTimer {
    const timer: Pending = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, canceled: false }
    this.#timers.push(timer)
    if (timer.at <= this.#now) this.#flushSoon()
    return { cancel: () => { timer.canceled = true } }
  }

  /** Timers not yet run nor canceled. */
  get pending (): number {
    return this.#timers.filter(t => !t.canceled).length
  }

  /** Moves time forward by ms, running every timer that falls due on the way, in order. */
  async advance (ms: number): Promise<void> {
    const end = this.#now + ms
    for (let ran = 0; ran < MAX_TIMERS_PER_ADVANCE; ran++) {
      const next = this.#next(end)
      if (next === undefined) break
      this.#now = Math.max(this.#now, next.at)
      next.fn()
      await turn()
    }
    this.#now = end
    await turn()
  }

  #next (until: number): Pending | undefined {
    this.#timers = this.#timers.filter(t => !t.canceled)
    let best: Pending | undefined
    for (const t of this.#timers) {
      if (t.at <= until && (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq))) best = t
    }
    if (best !== undefined) best.canceled = true
    return best
  }

  #flushSoon (): void {
    if (this.#flushing) return
    this.#flushing = true
    setImmediate(() => {
      this.#flushing = false
      // Runs what is due now, and what those set for now too, within the same bound as advance().
      for (let ran = 0; ran < MAX_TIMERS_PER_ADVANCE; ran++) {
        const next = this.#next(this.#now)
        if (next === undefined) break
        next.fn()
      }
    })
  }
}

/** One turn of the event loop: I/O callbacks and the promises they settle run. */
async function turn (): Promise<void> {
  await new Promise<void>(resolve => setImmediate(resolve))
}
