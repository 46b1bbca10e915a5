import { describe, it, expect } from 'vitest'
import { TRANSFER_STATES, TERMINAL_STATES, canTransition } from '../../coordinator/model.ts'
import type { TransferState } from '../../coordinator/model.ts'

const allowed: Array<[TransferState, TransferState]> = [
  ['queued', 'scheduled'], ['queued', 'canceled'], ['queued', 'failed'],
  ['scheduled', 'active'], ['scheduled', 'queued'], ['scheduled', 'failed'], ['scheduled', 'canceled'],
  ['active', 'verifying'], ['active', 'queued'], ['active', 'failed'], ['active', 'canceled'],
  ['verifying', 'succeeded'], ['verifying', 'queued'], ['verifying', 'failed'], ['verifying', 'canceled']
]

describe('the transfer state machine', () => {
  it('allows exactly the documented edges', () => {
    const key = (e: [TransferState, TransferState]): string => e.join('→')
    const expected = new Set(allowed.map(key))
    for (const from of TRANSFER_STATES) {
      for (const to of TRANSFER_STATES) {
        expect(canTransition(from, to), `${from} → ${to}`).toBe(expected.has(key([from, to])))
      }
    }
  })

  it('has no way out of a terminal state', () => {
    for (const from of TERMINAL_STATES) {
      expect(TRANSFER_STATES.filter(to => canTransition(from, to))).toEqual([])
    }
  })

  it('forbids skipping ahead', () => {
    expect(canTransition('queued', 'active')).toBe(false)
    expect(canTransition('queued', 'succeeded')).toBe(false)
    expect(canTransition('scheduled', 'verifying')).toBe(false)
    expect(canTransition('active', 'succeeded')).toBe(false)
    expect(canTransition('queued', 'queued')).toBe(false)
  })
})
