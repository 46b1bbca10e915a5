import { describe, expect, it } from 'vitest'
import { PASS_FREE_MS, PASS_PAUSE_FACTOR, passDelay } from '../../coordinator/pass-pacing.ts'

describe('scheduling pass pacing', () => {
  it('runs the next pass at once after a short one', () => {
    expect(passDelay(0, 0)).toBe(0)
    expect(passDelay(PASS_FREE_MS / 2, 0)).toBe(0)
  })

  it('after a long pass, waits a multiple of its duration, counted from its end', () => {
    expect(passDelay(5, 0)).toBe(5 * PASS_PAUSE_FACTOR)
    expect(passDelay(5, 3)).toBe(5 * PASS_PAUSE_FACTOR - 3)
    expect(passDelay(5, 5 * PASS_PAUSE_FACTOR + 1)).toBe(0)
  })

  it('keeps passes to at most 1 / (1 + factor) of the time under a steady stream of changes', () => {
    // Passes asked for continuously, each taking 8 ms: pass, pause, pass …
    let t = 0
    let busy = 0
    for (let i = 0; i < 100; i++) {
      busy += 8
      t += 8
      t += passDelay(8, 0)
    }
    expect(busy / t).toBeCloseTo(1 / (1 + PASS_PAUSE_FACTOR), 5)
  })

  it('is not paced by a duration that is not a number', () => {
    expect(passDelay(Number.NaN, 0)).toBe(0)
  })
})
