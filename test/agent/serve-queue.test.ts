import { describe, it, expect } from 'vitest'
import { ServeQueue } from '../../agent/swarm/serve-queue.ts'

describe('a peer\'s serve queue', () => {
  it('holds one entry per piece however many requests a peer sends', () => {
    const q = new ServeQueue()
    for (let i = 0; i < 100_000; i++) q.push(i % 7, false)
    expect(q.size).toBe(7)
    expect([0, 1, 2, 3, 4, 5, 6].map(() => q.shift()?.piece)).toEqual([0, 1, 2, 3, 4, 5, 6])
    expect(q.shift()).toBeUndefined()
  })

  it('keeps a piece\'s place and its `sole` flag when it is asked for again', () => {
    const q = new ServeQueue()
    q.push(5, false)
    q.push(9, false)
    q.push(5, true)
    q.push(9, false)
    expect(q.shift()).toEqual({ piece: 5, sole: true })
    expect(q.shift()).toEqual({ piece: 9, sole: false })
  })

  it('queues a piece again when it is asked for while being served (its reject may have crossed the request)', () => {
    const q = new ServeQueue()
    q.push(3, false)
    const serving = q.shift()
    q.push(3, true)
    expect(serving).toEqual({ piece: 3, sole: false })
    expect(q.shift()).toEqual({ piece: 3, sole: true })
  })

  it('drops a cancelled piece', () => {
    const q = new ServeQueue()
    q.push(1, false)
    q.push(2, false)
    q.cancel(1)
    q.cancel(8)
    expect(q.shift()?.piece).toBe(2)
    expect(q.size).toBe(0)
  })
})
