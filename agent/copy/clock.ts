import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Time as the data path sees it: injected so that unit tests drive the sync
 * interval, the progress timer and the throttle without waiting.
 */
export interface Clock {
  /** Milliseconds, monotonic within a process. */
  now: () => number
  /** Calls `fn` every `ms` until the returned function is called. */
  every: (ms: number, fn: () => void) => () => void
  /** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>
}

export const systemClock: Clock = {
  now: () => performance.now(),
  every: (ms, fn) => {
    const timer = setInterval(fn, ms)
    return () => clearInterval(timer)
  },
  sleep: async (ms, signal) => { await sleep(ms, undefined, { signal }) }
}
