import { describe, expect, it } from 'vitest'
import { ServeQueue } from '../../agent/swarm/serve-queue.ts'

describe('ServeQueue', () => {
  it('serves requests in the order asked, the first one starting the loop', () => {
    const q = new ServeQueue(8)
    expect(q.push({ piece: 3, sole: false })).toBe('first')
    expect(q.push({ piece: 1, sole: true })).toBe('queued')
    const head = q.peek()
    expect(head).toEqual({ piece: 3, sole: false })
    q.done(head!)
    expect(q.peek()).toEqual({ piece: 1, sole: true })
  })

  it('drops a second request for a piece still waiting', () => {
    const q = new ServeQueue(8)
    q.push({ piece: 5, sole: false })
    q.push({ piece: 6, sole: false })
    expect(q.push({ piece: 6, sole: true })).toBe('duplicate')
    expect(q.length).toBe(2)
  })

  it('queues a request for the piece at the head: its answer may already be with the peer, which asks again', () => {
    const q = new ServeQueue(8)
    q.push({ piece: 5, sole: false })
    // The seed's reject for piece 5 went out; the peer asks again as its sole source before the head is done.
    expect(q.push({ piece: 5, sole: true })).toBe('queued')
    q.done(q.peek()!)
    expect(q.peek()).toEqual({ piece: 5, sole: true })
  })

  it('refuses requests past its bound, whatever a peer sends', () => {
    const q = new ServeQueue(4)
    for (let i = 0; i < 4; i++) expect(q.push({ piece: i, sole: false })).not.toBe('overflow')
    for (let i = 4; i < 10_000; i++) expect(q.push({ piece: i, sole: false })).toBe('overflow')
    expect(q.length).toBe(4)
  })

  it('cancels a waiting request but keeps the one being served until it is done', () => {
    const q = new ServeQueue(8)
    q.push({ piece: 1, sole: false })
    q.push({ piece: 2, sole: false })
    q.cancel(1)
    q.cancel(2)
    expect(q.length).toBe(1)
    const head = q.peek()!
    expect(head.piece).toBe(1)
    q.done(head)
    expect(q.length).toBe(0)
    // A piece canceled while served may be asked for again afterwards.
    expect(q.push({ piece: 1, sole: false })).toBe('first')
  })
})
