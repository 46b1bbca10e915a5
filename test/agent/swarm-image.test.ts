import { describe, expect, it } from 'vitest'
import { segments, sliceChunks } from '../../agent/swarm/image.ts'

const blob = (size: number, n: number): { digest: string, size: number } => ({ digest: `sha256:${String(n).repeat(64)}`, size })

describe('an image laid out as one object for the swarm', () => {
  const blobs = [blob(10, 1), blob(0, 2), blob(25, 3), blob(5, 4)]

  it('cuts a range into the parts of the blobs it covers, across blob boundaries', () => {
    expect(segments(blobs, 0, 10)).toEqual([{ blob: 0, at: 0, length: 10 }])
    expect(segments(blobs, 8, 10)).toEqual([{ blob: 0, at: 8, length: 2 }, { blob: 2, at: 0, length: 8 }])
    expect(segments(blobs, 30, 10)).toEqual([{ blob: 2, at: 20, length: 5 }, { blob: 3, at: 0, length: 5 }])
    expect(segments(blobs, 0, 40).reduce((n, s) => n + s.length, 0)).toBe(40)
  })

  it('never names an empty blob or a byte past the end', () => {
    expect(segments(blobs, 0, 40).some(s => s.blob === 1)).toBe(false)
    expect(segments(blobs, 38, 10)).toEqual([{ blob: 3, at: 3, length: 2 }])
    expect(segments(blobs, 40, 10)).toEqual([])
  })
})

describe('a piece split across blobs without copying', () => {
  const chunks = [Buffer.from('abc'), Buffer.from(''), Buffer.from('defgh'), Buffer.from('ij')]
  const text = (parts: Uint8Array[]): string => Buffer.concat(parts).toString()

  it('gives the bytes of any range of the chunks laid end to end, as views of them', () => {
    expect(text(sliceChunks(chunks, 0, 10))).toBe('abcdefghij')
    expect(text(sliceChunks(chunks, 2, 4))).toBe('cdef')
    expect(text(sliceChunks(chunks, 3, 5))).toBe('defgh')
    expect(text(sliceChunks(chunks, 7, 3))).toBe('hij')
    expect(sliceChunks(chunks, 4, 0)).toEqual([])
    const [view] = sliceChunks(chunks, 4, 2)
    expect(view.buffer).toBe(chunks[2].buffer)
  })

  it('cuts every range a piece covers in segments() so that the parts add up to the piece', () => {
    const blobs = [blob(4, 1), blob(0, 2), blob(6, 3)]
    let pos = 0
    const got = segments(blobs, 0, 10).map(s => { const parts = text(sliceChunks(chunks, pos, s.length)); pos += s.length; return parts })
    expect(got).toEqual(['abcd', 'efghij'])
  })
})
