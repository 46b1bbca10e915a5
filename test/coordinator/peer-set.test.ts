import { describe, it, expect } from 'vitest'
import { choosePeers, sample, servingParticipants } from '../../coordinator/peer-set.ts'

/** A deterministic generator: the same sequence on every run. */
function counter (): () => number {
  let x = 0
  return () => (x = (x * 9301 + 49297) % 233280) / 233280
}

const names = (n: number): string[] => Array.from({ length: n }, (_, i) => `h${i}`)

describe('tracker peer-set selection', () => {
  it('in a small swarm gives a destination the seed first and a bounded random rest', () => {
    const peers = choosePeers({ seed: 'seed', others: ['seed', ...names(20)], size: 8, seedFanout: 32, random: counter() })
    expect(peers[0]).toBe('seed')
    expect(peers).toHaveLength(8)
    expect(new Set(peers).size).toBe(8)
  })

  it('names everyone when the swarm is smaller than a peer set (as before)', () => {
    const peers = choosePeers({ seed: 'seed', others: ['seed', ...names(5)], size: 8, seedFanout: 32, random: counter() })
    expect(peers[0]).toBe('seed')
    expect([...peers].sort()).toEqual(['seed', ...names(5)].sort())
  })

  it('gives the seed to about seedFanout destinations of a large swarm, so its links do not grow with N', () => {
    const all = ['seed', ...names(500)]
    const random = counter()
    let withSeed = 0
    for (const self of names(500)) {
      if (choosePeers({ seed: 'seed', others: all.filter(a => a !== self), size: 8, seedFanout: 32, random }).includes('seed')) withSeed++
    }
    expect(withSeed).toBeGreaterThan(16)
    expect(withSeed).toBeLessThan(64)
  })

  it('puts the preferred (a participant just back) first, and leaves out those offline', () => {
    const peers = choosePeers({ seed: 'seed', others: names(50), prefer: ['h7', 'gone'], size: 8, seedFanout: 32, random: counter() })
    expect(peers[0]).toBe('h7')
    expect(peers).not.toContain('gone')
    expect(peers).not.toContain('seed')
  })

  it('samples without replacement', () => {
    const s = sample(names(10), 4, counter())
    expect(new Set(s).size).toBe(4)
    expect(sample(names(3), 10, counter())).toHaveLength(3)
  })
})

describe('tracker peer-set selection with the previous list', () => {
  const all = ['seed', ...names(500)]

  it('keeps the previous peers still online after the preferred, and draws only the places of those gone', () => {
    const previous = ['h1', 'h2', 'h3', 'gone', 'h5', 'h6', 'h8', 'h9']
    const peers = choosePeers({ seed: 'seed', others: all.filter(a => a !== 'h0'), prefer: ['h7'], previous, size: 8, seedFanout: 32, random: counter() })
    expect(peers.slice(0, 7)).toEqual(['h7', 'h1', 'h2', 'h3', 'h5', 'h6', 'h8'])
    expect(peers).toHaveLength(8)
    expect(peers).not.toContain('gone')
    expect(new Set(peers).size).toBe(8)
  })

  it('does not draw the seed again in a large swarm: re-joins keep the seed\'s links bounded', () => {
    const random = counter()
    let withSeed = 0
    for (const self of names(500)) {
      const others = all.filter(a => a !== self)
      const first = choosePeers({ seed: 'seed', others, size: 8, seedFanout: 32, random })
      const had = first.includes('seed')
      // Ten re-joins to be told of a newcomer each: with a fresh draw every time the seed would reach ~10 × 32 destinations.
      let list = first
      for (let i = 0; i < 10; i++) list = choosePeers({ seed: 'seed', others, prefer: [`h${(i * 37) % 500}`], previous: list, size: 8, seedFanout: 32, random })
      expect(list.includes('seed')).toBe(had)
      if (had) withSeed++
    }
    expect(withSeed).toBeLessThan(64)
  })

  it('in a small swarm still gives the seed to everyone, even if it was offline last time', () => {
    const peers = choosePeers({ seed: 'seed', others: ['seed', ...names(5)], previous: names(5), size: 8, seedFanout: 32, random: counter() })
    expect(peers[0]).toBe('seed')
  })
})

describe('who the tracker may name as a peer', () => {
  it('names destinations that finished (they serve until the distribution ends), not those failed or canceled', () => {
    const destinations = [
      { agent: 'd1', state: 'succeeded' },
      { agent: 'd2', state: 'active' },
      { agent: 'd3', state: 'failed' },
      { agent: 'd4', state: 'canceled' },
      { agent: 'd5', state: 'queued' }
    ]
    expect(servingParticipants('seed', destinations)).toEqual(['seed', 'd1', 'd2', 'd5'])
  })

  it('gives a destination restarted after the others finished those others, not the seed alone', () => {
    const others = servingParticipants('seed', [{ agent: 'd1', state: 'succeeded' }, { agent: 'd2', state: 'succeeded' }, { agent: 'd3', state: 'active' }]).filter(a => a !== 'd3')
    expect([...choosePeers({ seed: 'seed', others, size: 16, seedFanout: 32, random: counter() })].sort()).toEqual(['d1', 'd2', 'seed'])
  })
})
