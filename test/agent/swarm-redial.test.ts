import { describe, it, expect } from 'vitest'
import { REDIAL_MAX_MS, REDIAL_MS, RedialBackoff } from '../../agent/swarm/redial.ts'

describe('redialing swarm peers', () => {
  it('backs off exponentially per peer, up to REDIAL_MAX_MS, and forgets on success', () => {
    const r = new RedialBackoff()
    let now = 0
    expect(r.due('p', now)).toBe(true)
    const waits: number[] = []
    for (let i = 0; i < 7; i++) {
      r.failed('p', now)
      let wait = 0
      // Bounded: the back-off never exceeds REDIAL_MAX_MS.
      while (!r.due('p', now + wait) && wait <= REDIAL_MAX_MS) wait += 100
      waits.push(wait)
      now += wait
    }
    expect(waits).toEqual([REDIAL_MS, 2 * REDIAL_MS, 4 * REDIAL_MS, 8 * REDIAL_MS, REDIAL_MAX_MS, REDIAL_MAX_MS, REDIAL_MAX_MS])
    expect(r.due('other', now)).toBe(true)
    r.succeeded('p')
    expect(r.due('p', now)).toBe(true)
    expect(r.failed('p', now)).toBe(1)
  })

  it('dials at once a peer the coordinator names again (it came back), whatever back-off grew while it was down', () => {
    const r = new RedialBackoff()
    for (let i = 0; i < 6; i++) r.failed('back', 1000)
    r.failed('still-down', 1000)
    expect(r.due('back', 1001)).toBe(false)
    r.renamed(['back'])
    expect(r.due('back', 1001)).toBe(true)
    // Only the peers named again: another's back-off stands.
    expect(r.due('still-down', 1001)).toBe(false)
    expect(r.failed('back', 1001)).toBe(1)
  })
})
