import { describe, it, expect } from 'vitest'
import { UploadTurns, nextToServe } from '../../agent/swarm/serve-order.ts'

describe('nextToServe', () => {
  it('serves the piece fewest peers hold first, then the asker holding fewest pieces, then the earliest', () => {
    expect(nextToServe([])).toBeUndefined()
    expect(nextToServe([{ holders: 3, askerPieces: 0 }, { holders: 1, askerPieces: 60 }])).toBe(1)
    expect(nextToServe([{ holders: 2, askerPieces: 40 }, { holders: 2, askerPieces: 3 }, { holders: 2, askerPieces: 9 }])).toBe(1)
    expect(nextToServe([{ holders: 1, askerPieces: 5 }, { holders: 1, askerPieces: 5 }])).toBe(0)
  })
})

describe('UploadTurns', () => {
  it('lets one serve through at a time and gives the next turn to the one nextToServe prefers when the holder is done', async () => {
    const turns = new UploadTurns()
    const order: string[] = []
    await turns.turn(() => ({ holders: 0, askerPieces: 0 }))
    // The candidates are read when the turn goes out: `late` becomes the rarest while it waits.
    let lateHolders = 5
    const waits = [
      turns.turn(() => ({ holders: 2, askerPieces: 10 })).then(() => { order.push('common'); turns.done() }),
      turns.turn(() => ({ holders: 2, askerPieces: 1 })).then(() => { order.push('empty asker'); turns.done() }),
      turns.turn(() => ({ holders: lateHolders, askerPieces: 50 })).then(() => { order.push('late'); turns.done() })
    ]
    expect(turns.queued).toBe(3)
    lateHolders = 0
    turns.done()
    await Promise.all(waits)
    expect(order).toEqual(['late', 'empty asker', 'common'])
    // Free again: the next turn is immediate.
    await turns.turn(() => ({ holders: 0, askerPieces: 0 }))
    turns.done()
    expect(turns.queued).toBe(0)
  })
})
