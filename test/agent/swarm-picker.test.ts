import { describe, it, expect } from 'vitest'
import { Bitfield } from '../../agent/swarm/bitfield.ts'
import { PiecePicker } from '../../agent/swarm/picker.ts'
import { effectivePieceSize, pieceCount, pieceRange, MAX_PIECES } from '../../agent/swarm/manifest.ts'

function bits (size: number, pieces: number[]): Bitfield {
  const b = new Bitfield(size)
  for (const p of pieces) b.set(p)
  return b
}

describe('bitfield', () => {
  it('round-trips through base64, counts, and ignores bits past its size', () => {
    const b = bits(11, [0, 3, 10])
    const back = Bitfield.fromBase64(11, b.toBase64())
    expect([...Array(11).keys()].filter(i => back.has(i))).toEqual([0, 3, 10])
    expect(back.count()).toBe(3)
    // A peer claiming pieces that do not exist gets them cleared.
    const forged = Bitfield.fromBase64(11, Buffer.from([0xff, 0xff]).toString('base64'))
    expect(forged.count()).toBe(11)
    expect(forged.has(11)).toBe(false)
    expect(forged.complete()).toBe(true)
    expect(b.set(3)).toBe(false)
  })
})

describe('piece picker', () => {
  it('asks for the rarest piece the peer has', () => {
    const mine = new Bitfield(4)
    const picker = new PiecePicker(mine)
    picker.addPeer(bits(4, [0, 1, 2, 3]))
    picker.addPeer(bits(4, [0, 1, 2]))
    picker.addPeer(bits(4, [0, 1]))
    // Piece 3 is held by one peer, 2 by two, 0 and 1 by three.
    expect(picker.pick('a', bits(4, [0, 1, 2, 3]), new Set())).toBe(3)
    expect(picker.pick('a', bits(4, [0, 1, 2, 3]), new Set())).toBe(2)
  })

  it('never asks twice for a piece in flight before the endgame, and skips refused pieces', () => {
    const mine = new Bitfield(10)
    const picker = new PiecePicker(mine)
    const all = bits(10, [...Array(10).keys()])
    picker.addPeer(all)
    const first = new Set<number>()
    for (let i = 0; i < 10; i++) first.add(picker.pick('a', all, new Set()) as number)
    expect(first.size).toBe(10)
    // Ten missing pieces, all in flight: not yet the endgame, so nothing for a second peer.
    expect(picker.pick('b', all, new Set())).toBeUndefined()
    for (const p of [0, 1, 2, 3, 4, 5]) { picker.received(p); mine.set(p) }
    // Four missing: the endgame allows one more request per piece, from another peer, never a refused one.
    const second = picker.pick('b', all, new Set([6]))
    expect([7, 8, 9]).toContain(second)
    expect(picker.pick('a', all, new Set())).toBeUndefined()
  })

  it('releases a peer\'s requests when it goes, so the pieces are asked elsewhere', () => {
    const mine = new Bitfield(2)
    const picker = new PiecePicker(mine)
    const both = bits(2, [0, 1])
    picker.addPeer(both)
    picker.addPeer(both)
    const p = picker.pick('a', both, new Set()) as number
    expect(picker.removePeer(both, 'a')).toEqual([p])
    expect([0, 1]).toContain(picker.pick('b', both, new Set()))
  })
})

describe('manifest geometry', () => {
  it('grows the piece size for huge objects so a manifest stays under the piece limit', () => {
    const MiB = 1024 * 1024
    expect(effectivePieceSize(256 * MiB, 4 * MiB)).toBe(4 * MiB)
    const big = 100 * 1024 * MiB
    const size = effectivePieceSize(big, 4 * MiB)
    expect(size % MiB).toBe(0)
    expect(pieceCount({ size: big, pieceSize: size })).toBeLessThanOrEqual(MAX_PIECES)
    expect(pieceRange({ size: 10, pieceSize: 4 }, 2)).toEqual({ offset: 8, length: 2 })
    expect(pieceCount({ size: 0, pieceSize: 4 })).toBe(1)
  })
})
