import { describe, it, expect } from 'vitest'
import { seedRefusal } from '../../agent/swarm/super-seed.ts'
import { TokenLedger } from '../../agent/rate-limit.ts'

describe('super-seeding (the seed\'s refusal)', () => {
  it('sends a piece it never sent', () => {
    expect(seedRefusal({ holders: [], recipientElsewhere: false, sole: false })).toBeUndefined()
  })

  it('points at the holders of a piece it sent, unless the asker reaches none of them', () => {
    expect(seedRefusal({ sentTo: 'a', holders: ['a', 'b'], recipientElsewhere: true, sole: false })).toEqual({ reason: 'peers have this piece; fetch it there', holders: ['a', 'b'] })
    expect(seedRefusal({ sentTo: 'a', holders: ['a'], recipientElsewhere: true, sole: true })).toBeUndefined()
  })

  it('points at the recipient of a piece still on its way, and sends again when that recipient is gone', () => {
    expect(seedRefusal({ sentTo: 'a', holders: [], recipientElsewhere: true, sole: false })).toEqual({ reason: 'this piece is on its way to a peer; fetch it there', holders: ['a'] })
    expect(seedRefusal({ sentTo: 'a', holders: [], recipientElsewhere: false, sole: false })).toBeUndefined()
  })
})

describe('token ledger (the rate limit on an injected clock)', () => {
  it('lets a burst through, then makes callers wait their share in the order they reserved', () => {
    const ledger = new TokenLedger(1000, 500, 0)
    expect(ledger.reserve(500, 0)).toBe(0)
    // 1000 bytes at 1000 B/s: one second, then the next caller waits behind it.
    expect(ledger.reserve(1000, 0)).toBe(1000)
    expect(ledger.reserve(500, 0)).toBe(1500)
  })

  it('refills at its rate up to the burst', () => {
    const ledger = new TokenLedger(1000, 500, 0)
    expect(ledger.reserve(500, 0)).toBe(0)
    expect(ledger.reserve(250, 250)).toBe(0)
    // Ten seconds idle refill only the burst.
    expect(ledger.reserve(1500, 10_250)).toBe(1000)
  })
})
