import { describe, expect, it } from 'vitest'
import { PieceCache } from '../../agent/swarm/piece-cache.ts'

const piece = (bytes: number, fill: number): Uint8Array[] => [new Uint8Array(bytes / 2).fill(fill), new Uint8Array(bytes / 2).fill(fill)]

describe('PieceCache', () => {
  it('serves what it keeps, in the chunks it was given, per distribution', () => {
    const cache = new PieceCache(1024)
    const parts = piece(256, 7)
    cache.put('d1', 3, parts)
    expect(cache.get('d1', 3)).toBe(parts)
    expect(cache.get('d1', 4)).toBeUndefined()
    expect(cache.get('d2', 3)).toBeUndefined()
  })

  it('drops the least recently used pieces once over its budget, whichever distribution they belong to', () => {
    const cache = new PieceCache(1024)
    cache.put('d1', 0, piece(256, 0))
    cache.put('d2', 1, piece(256, 1))
    cache.put('d1', 2, piece(256, 2))
    cache.put('d2', 3, piece(256, 3))
    // Using d1/0 makes d2/1 the oldest.
    expect(cache.get('d1', 0)).toBeDefined()
    cache.put('d1', 4, piece(256, 4))
    expect(cache.get('d2', 1)).toBeUndefined()
    expect(cache.size).toBe(1024)
    for (const [d, p] of [['d1', 0], ['d1', 2], ['d2', 3], ['d1', 4]] as const) expect(cache.get(d, p)?.[0][0]).toBe(p)
  })

  it('does not keep a piece larger than its whole budget', () => {
    const cache = new PieceCache(1024)
    cache.put('d1', 1, piece(256, 1))
    cache.put('d1', 2, piece(2048, 2))
    expect(cache.get('d1', 2)).toBeUndefined()
    expect(cache.get('d1', 1)).toBeDefined()
    expect(cache.size).toBe(256)
  })

  it('forgets the pieces of a distribution the agent left, and only those', () => {
    const cache = new PieceCache(1024)
    cache.put('d1', 1, piece(256, 1))
    cache.put('d2', 1, piece(256, 9))
    cache.put('d1', 2, piece(256, 2))
    cache.forget('d1')
    expect(cache.get('d1', 1)).toBeUndefined()
    expect(cache.get('d1', 2)).toBeUndefined()
    expect(cache.get('d2', 1)?.[0][0]).toBe(9)
    expect(cache.size).toBe(256)
  })
})
