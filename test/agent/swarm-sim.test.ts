import { describe, it, expect } from 'vitest'
import { EventQueue } from '../../agent/swarm/sim/heap.ts'
import { kumarRossBound } from '../../agent/swarm/sim/bound.ts'
import { simulate } from '../../agent/swarm/sim/engine.ts'
import type { SimConfig } from '../../agent/swarm/sim/engine.ts'
import { quantile, seededRandom } from '../../agent/swarm/sim/random.ts'
import { destinationTimes, runScenario, scenarioBound } from '../../agent/swarm/sim/run.ts'
import type { HostSpec } from '../../agent/swarm/sim/scenario.ts'
import { MAX_OUTSTANDING } from '../../agent/swarm/session.ts'

const MiB = 1024 * 1024

describe('simulator event queue', () => {
  it('runs events in time order, and events at the same time in the order they were scheduled', () => {
    const q = new EventQueue()
    const seen: string[] = []
    const random = seededRandom(3)
    const times = Array.from({ length: 200 }, () => Math.floor(random() * 50))
    times.forEach((t, i) => { q.at(t, () => { seen.push(`${t}:${i}`) }) })
    q.at(10, () => { q.after(0, () => seen.push('10:nested')) })
    expect(q.run(() => false, 1000)).toBe(202)
    const order = seen.filter(s => s !== '10:nested').map(s => s.split(':').map(Number))
    for (let i = 1; i < order.length; i++) {
      expect(order[i][0] > order[i - 1][0] || (order[i][0] === order[i - 1][0] && order[i][1] > order[i - 1][1])).toBe(true)
    }
    // Scheduled at 10 from within an event at 10: after everything already queued for 10.
    expect(seen.indexOf('10:nested')).toBe(seen.filter(s => Number(s.split(':')[0]) <= 10).length - 1)
  })

  it('stops at its event limit', () => {
    const q = new EventQueue()
    const again = (): void => { q.after(1, again) }
    again()
    expect(q.run(() => false, 50)).toBe(50)
    expect(q.now).toBe(50)
  })
})

describe('Kumar–Ross bound', () => {
  it('is the largest of the seed\'s time, the slowest download and the swarm\'s total upload', () => {
    // Seed-bound: F/u_s.
    expect(kumarRossBound(100, 10, [10, 10], [100, 100])).toBe(10)
    // Download-bound: F/d_min.
    expect(kumarRossBound(100, 10, [10, 10], [100, 5])).toBe(20)
    // Upload-bound: N·F/(u_s + Σu_i) = 4·100/(10 + 4·1) ≈ 28.6.
    expect(kumarRossBound(100, 10, [1, 1, 1, 1], [100, 100, 100, 100])).toBeCloseTo(400 / 14, 10)
  })
})

describe('simulated swarm', () => {
  const host = (up: number, down: number): HostSpec => ({ up, down, latencyMs: 0, joinAt: 0, corrupt: false })
  const config = (hosts: HostSpec[], size: number): SimConfig => ({
    size, pieceSize: MiB, seed: host(MiB, MiB), hosts, tracker: (self, others) => others.filter(o => o !== self),
    maxOutstanding: MAX_OUTSTANDING, random: seededRandom(1), tickMs: 1000, redialMs: 2000, maxEvents: 1e6, maxTimeMs: 1e6
  })

  it('one seed and one destination, computed by hand', () => {
    // Four pieces of 1 MiB, the seed's upload 1 MiB/s with a 256 KiB burst (defaultBurst), no latency, download uncapped:
    // the four requests arrive at once; the first waits (1 MiB − 256 KiB)/1 MiB/s = 0.75 s, each next one 1 s more.
    const out = simulate(config([host(MiB, Infinity)], 4 * MiB))
    expect(out.completion[0]).toBeCloseTo(3750, 6)
    expect(out.served).toEqual([4 * MiB, 0])
    expect(out.wastedDuplicate + out.wastedCorrupt).toBe(0)
  })

  it('hashing each piece on arrival and once more read back, computed by hand (the --validate model of CPU)', () => {
    // As above, pieces arrive at 0.75, 1.75, 2.75 and 3.75 s; hashing at 4 MiB/s takes 0.25 s, twice for each piece
    // (on arrival, then read back), the earlier ones' done before the next arrives: 3.75 + 0.25 + 0.25 = 4.25 s.
    // (The whole file hashed again at the end made it 5 s.)
    const out = simulate({ ...config([host(MiB, Infinity)], 4 * MiB), verifyBytesPerSec: 4 * MiB })
    expect(out.completion[0]).toBeCloseTo(4250, 6)
  })

  it('a destination\'s download cap delays storing: the last piece lands at the download bucket\'s pace', () => {
    // Download 0.5 MiB/s: the first piece arrives at 0.75 s with the bucket full (256 KiB), and from then on the four
    // pieces drain it at its pace: 0.75 s + (4 MiB − 256 KiB)/0.5 MiB/s = 8.25 s, later than the seed's 3.75 s.
    const out = simulate(config([host(MiB, MiB / 2)], 4 * MiB))
    expect(out.completion[0]).toBeCloseTo(8250, 6)
  })

  it('peers share: with two destinations the seed sends each piece once and the destinations swap the rest', () => {
    const out = simulate(config([host(MiB, Infinity), host(MiB, Infinity)], 8 * MiB))
    expect(out.completion.every(t => t !== undefined)).toBe(true)
    expect(out.served[0]).toBe(8 * MiB)
    expect(out.served[1] + out.served[2]).toBe(8 * MiB)
  })

  it('drops a corrupt peer and still delivers to everyone else', () => {
    const bad = { ...host(MiB, Infinity), corrupt: true }
    const out = simulate(config([host(MiB, Infinity), bad, host(MiB, Infinity)], 8 * MiB))
    // The run ends when the honest destinations are done; the corrupt one is not waited for.
    expect([out.completion[0], out.completion[2]].every(t => t !== undefined)).toBe(true)
    expect(out.wastedCorrupt).toBeGreaterThan(0)
  })

  it('a scenario run gives the figures the bench prints, replayed exactly from its seed', () => {
    const run = { scenario: 'churn' as const, n: 20, size: 16 * MiB, pieceSize: MiB, rate: 8 * MiB, seed: 5, maxOutstanding: MAX_OUTSTANDING, tracker: () => (self: number, others: readonly number[]) => others.filter(o => o !== self).slice(0, 8) }
    const a = runScenario(run)
    expect(runScenario(run)).toEqual(a)
    expect(a.unfinished).toBe(0)
    expect(a.p50OverBound).toBeGreaterThanOrEqual(0.9)
    expect(a.p99OverBound).toBeGreaterThanOrEqual(a.p50OverBound)
    expect(quantile([3, 1, 2], 0.5)).toBe(2)
  })
})

describe('scenario figures: what is compared with the bound', () => {
  const host = (up: number, extra: Partial<HostSpec> = {}): HostSpec => ({ up, down: Infinity, latencyMs: 0, joinAt: 0, corrupt: false, ...extra })

  it('leaves corrupt hosts out of the bound: their uploads are thrown away and they are not destinations', () => {
    // Two honest hosts of upload 1 and a corrupt one of 100, seed 1, F = 30: N·F/(u_s + Σu) = 2·30/3 = 20 > F/u_s.
    expect(scenarioBound(30, host(1), [host(1), host(1), host(100, { corrupt: true })])).toBe(30)
    expect(scenarioBound(90, host(3), [host(1), host(1), host(100, { corrupt: true })])).toBe(36)
  })

  it('counts a late joiner from its join, a returning host from the start, and no corrupt host', () => {
    const hosts = [host(1), host(1, { joinAt: 4000 }), host(1, { leaveAt: 1000, returnAt: 3000 }), host(1, { corrupt: true }), host(1)]
    expect(destinationTimes(hosts, [5000, 9000, 8000, undefined, undefined])).toEqual([5, 5, 8, Infinity])
  })
})

