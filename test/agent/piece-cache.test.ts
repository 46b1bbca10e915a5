import { describe, expect, it } from 'vitest'
import { PieceCache } from '../../agent/swarm/piece-cache.ts'

const piece = (bytes: number, fill: number): Uint8Array[] => [new Uint8Array(bytes / 2).fill(fill), new Uint8Array(bytes / 2).fill(fill)]

describe('PieceCache', () => {
  it('serves what it keeps, in the chunks it was given', () => {
    const cache = new PieceCache(1024)
    const parts = piece(256, 7)
    cache.put(3, parts)
    expect(cache.get(3)).toBe(parts)
    expect(cache.get(4)).toBeUndefined()
  })

  it('drops the least recently used pieces once over its budget', () => {
    const cache = new PieceCache(1024)
    for (let i = 0; i < 4; i++) cache.put(i, piece(256, i))
    // Using piece 0 makes piece 1 the oldest.
    expect(cache.get(0)).toBeDefined()
    cache.put(4, piece(256, 4))
    expect(cache.get(1)).toBeUndefined()
    for (const kept of [0, 2, 3, 4]) expect(cache.get(kept)?.[0][0]).toBe(kept)
  })

  it('does not keep a piece larger than its whole budget, and forgets everything on clear', () => {
    const cache = new PieceCache(1024)
    cache.put(1, piece(256, 1))
    cache.put(2, piece(2048, 2))
    expect(cache.get(2)).toBeUndefined()
    expect(cache.get(1)).toBeDefined()
    cache.clear()
    expect(cache.get(1)).toBeUndefined()
  })
})
