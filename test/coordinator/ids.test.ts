import { describe, it, expect } from 'vitest'
import { createIdGenerator, idTime, isTransferId, newTransferId } from '../../coordinator/ids.ts'

describe('transfer ids', () => {
  it('have the tr_ prefix, a time part and a random part', () => {
    const id = newTransferId(1_700_000_000_000)
    expect(isTransferId(id)).toBe(true)
    expect(id).toHaveLength(3 + 26)
    expect(idTime(id)).toBe(1_700_000_000_000)
  })

  it('sort in creation order within one millisecond and across milliseconds', () => {
    const gen = createIdGenerator('tr_')
    const ids: string[] = []
    for (let i = 0; i < 1000; i++) ids.push(gen.next(1_700_000_000_000 + Math.floor(i / 100)))
    expect([...ids].sort()).toEqual(ids)
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('stay ordered when the clock steps back', () => {
    const gen = createIdGenerator('tr_')
    const a = gen.next(2_000_000)
    const b = gen.next(1_000_000)
    expect(b > a).toBe(true)
    expect(idTime(b)).toBe(2_000_000)
  })

  it('carries into the time part when the random part overflows', () => {
    const gen = createIdGenerator('tr_')
    gen.seed('tr_0000000001' + 'Z'.repeat(16))
    const next = gen.next(1)
    expect(next).toBe('tr_0000000002' + next.slice(13))
    expect(next > 'tr_0000000001' + 'Z'.repeat(16)).toBe(true)
  })

  it('continue after a seed from a later time than the clock', () => {
    const gen = createIdGenerator('tr_')
    const later = createIdGenerator('tr_').next(5_000_000)
    gen.seed(later)
    expect(gen.next(1_000) > later).toBe(true)
  })

  it('ignore seeds that are not their own ids', () => {
    const gen = createIdGenerator('tr_')
    gen.seed('ev_7ZZZZZZZZZZZZZZZZZZZZZZZZZ')
    gen.seed('tr_garbage')
    expect(idTime(gen.next(1_000))).toBe(1_000)
  })

  it('reject malformed ids', () => {
    expect(isTransferId('tr_0000000001ZZZZZZZZZZZZZZZU')).toBe(false) // U is not Crockford
    expect(isTransferId('tr_short')).toBe(false)
    expect(isTransferId('xx_00000000010000000000000000')).toBe(false)
  })
})
