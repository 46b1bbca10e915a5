import { describe, expect, it } from 'vitest'
import { segments } from '../../agent/swarm/image.ts'

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
