import { describe, it, expect } from 'vitest'
import { askSeedAlone } from '../../agent/swarm/sole.ts'
import type { HolderView } from '../../agent/swarm/sole.ts'

function view (attached: string[], expected: string[]): HolderView {
  return { attached: h => attached.includes(h), expected: h => expected.includes(h) }
}

describe('asking the seed again as the sole source after it refused a piece', () => {
  it('does not when the seed named no holder (it had nobody else: it is asked again later as usual)', () => {
    expect(askSeedAlone([], view([], []), 1)).toBe(false)
  })

  it('does not when a holder is connected to us: the piece comes from there', () => {
    expect(askSeedAlone(['a', 'b'], view(['b'], []), 100)).toBe(false)
  })

  it('waits while a connection to a holder is on its way, then asks alone after enough refusals', () => {
    expect(askSeedAlone(['a'], view([], ['a']), 1, 3)).toBe(false)
    expect(askSeedAlone(['a'], view([], ['a']), 2, 3)).toBe(false)
    expect(askSeedAlone(['a'], view([], ['a']), 3, 3)).toBe(true)
  })

  it('asks alone at once when every holder is out of reach (dropped, unknown to us, or failing to connect)', () => {
    expect(askSeedAlone(['bad', 'stranger'], view([], []), 1)).toBe(true)
  })
})
