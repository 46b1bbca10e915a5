import { describe, it, expect } from 'vitest'
import { MAX_DEPTH, RequestPacer } from '../../agent/swarm/pace.ts'

const MiB = 1024 * 1024

/** Each of `peers` delivers one piece of `bytes` every `every[peer]` ms while asked, for `rounds` pieces. */
function drive (pacer: RequestPacer<string>, every: Record<string, number>, bytes: number, rounds: number): void {
  for (const [peer, ms] of Object.entries(every)) {
    pacer.requested(peer, 0, true)
    for (let i = 1; i <= rounds; i++) pacer.delivered(peer, i * ms, bytes, true)
  }
}

describe('request pacing', () => {
  it('keeps the base depth until a peer has delivered, and while it is the only one measured', () => {
    const pacer = new RequestPacer<string>()
    expect(pacer.depth('a', 2)).toBe(2)
    drive(pacer, { a: 10 }, MiB, 3)
    expect(pacer.depth('a', 2)).toBe(2)
  })

  it('peers that deliver alike keep the base depth', () => {
    const pacer = new RequestPacer<string>()
    drive(pacer, { a: 100, b: 100, c: 100, d: 100 }, MiB, 5)
    for (const p of ['a', 'b', 'c', 'd']) expect(pacer.depth(p, 2)).toBe(2)
  })

  it('shares the depth by rate: a peer eight times faster gets more, the slow ones one each', () => {
    const pacer = new RequestPacer<string>()
    // Rates 8 : 1 : 1 : 1 (mean 2.75): the fast one 2 × 8/2.75 ≈ 5.8 → 6, the slow ones 2 × 1/2.75 ≈ 0.73 → 1.
    drive(pacer, { fast: 10, s1: 80, s2: 80, s3: 80 }, MiB, 20)
    expect(pacer.depth('fast', 2)).toBe(6)
    expect(pacer.depth('s1', 2)).toBe(1)
    // Never above MAX_DEPTH, however fast.
    drive(pacer, { fast: 0.01 }, MiB, 50)
    expect(pacer.depth('fast', 2)).toBe(MAX_DEPTH)
  })

  it('does not count time in which nothing was asked of the peer', () => {
    const pacer = new RequestPacer<string>()
    drive(pacer, { a: 100, b: 100 }, MiB, 3)
    // b's last piece left nothing in flight; it is asked again 10 s later and answers in 100 ms as before.
    pacer.delivered('b', 400, MiB, false)
    pacer.requested('b', 10_400, true)
    pacer.delivered('b', 10_500, MiB, false)
    expect(pacer.depth('b', 2)).toBe(2)
    // A refusal that leaves nothing in flight stops the wait too.
    pacer.requested('a', 20_000, true)
    pacer.ended('a', false)
    pacer.requested('a', 30_000, true)
    pacer.delivered('a', 30_100, MiB, false)
    expect(pacer.depth('a', 2)).toBe(2)
  })

  it('forgets a removed peer: it no longer weighs in the mean', () => {
    const pacer = new RequestPacer<string>()
    drive(pacer, { fast: 10, s1: 80, s2: 80 }, MiB, 20)
    expect(pacer.depth('s1', 2)).toBe(1)
    pacer.remove('fast')
    expect(pacer.depth('s1', 2)).toBe(2)
    expect(pacer.depth('fast', 2)).toBe(2)
  })
})
