/** A timer from a Clock; cancel() is safe to call twice and after it fired. */
export interface ClockTimer { cancel: () => void }

/**
 * Time for the coordinator's decisions (deadlines, back-off, liveness): the
 * system's in production, a fake one in tests that moves virtual time
 * forward on request, so that a test of a 5 s grace period takes no 5 s.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now: () => number
  /** Runs fn once, ms from now. */
  setTimeout: (fn: () => void, ms: number) => ClockTimer
}

/** Node's longest timer (2^31 − 1 ms, about 24.8 days); a longer delay would fire after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout (fn, ms) {
    // Capped: the dispatcher re-checks its deadline when its timer fires (an early one only re-arms), and no other delay comes near.
    const timer = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS))
    // Never what keeps the process up: the API server and the libp2p node do that while the coordinator runs.
    timer.unref()
    return { cancel: () => { clearTimeout(timer) } }
  }
}
