import { describe, it, expect } from 'vitest'
import { encodeFrame } from '../../mesh/index.ts'
import { OutgoingFrames, corruptDataStreams, corruptPieces } from '../fixtures/faults/damage-in-transit.ts'

/** The test fixture that damages bytes in transit must damage exactly what it says, however the bytes are split. */
function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

/** Passes `bytes` through in pieces of `step` bytes and joins what comes out. */
function through (frames: OutgoingFrames, bytes: Uint8Array, step: number): Uint8Array {
  const out: Uint8Array[] = []
  for (let at = 0; at < bytes.byteLength; at += step) out.push(frames.pass(bytes.subarray(at, at + step)))
  return concat(out)
}

describe('damage in transit (test fixture): follows mesh/wire.ts frames', () => {
  const body = new Uint8Array(10).fill(7)

  it('flips the first byte of each swarm piece and nothing else, however the sends are split', () => {
    const stream = concat([
      encodeFrame({ v: 1, t: 'have', piece: 3 }),
      encodeFrame({ v: 1, t: 'piece', piece: 0, length: 10 }), body,
      encodeFrame({ v: 1, t: 'reject', piece: 1, reason: 'no' }),
      encodeFrame({ v: 1, t: 'piece', piece: 2, length: 10 }), body
    ])
    for (const step of [1, 3, 7, stream.byteLength]) {
      const out = through(new OutgoingFrames(corruptPieces()), stream, step)
      const differ = [...out.keys()].filter(i => out[i] !== stream[i])
      expect(differ).toHaveLength(2)
      for (const i of differ) expect(out[i]).toBe(7 ^ 0xff)
    }
  })

  it('damages the body of the first N data responses only, never a stat or the trailer', () => {
    const rule = corruptDataStreams(1)
    const response = (length: number): Uint8Array => concat([
      encodeFrame({ v: 1, ok: true, size: 10, mtime: 0, length }), length > 0 ? body : new Uint8Array(0),
      encodeFrame({ v: 1, ok: true, sha256: 'ab' })
    ])
    const stat = response(0)
    expect(through(new OutgoingFrames(rule), stat, 5)).toEqual(stat)
    const first = response(10)
    expect(through(new OutgoingFrames(rule), first, 4)).not.toEqual(first)
    const second = response(10)
    expect(through(new OutgoingFrames(rule), second, 4)).toEqual(second)
  })
})
