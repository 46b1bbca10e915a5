import { describe, it, expect } from 'vitest'
import { MIN_MULTI_STREAM_BYTES, MIN_RANGE_BYTES, RANGE_ALIGN, chooseLayout, contiguousEnd, planRanges, resumeRanges, validRanges } from '../../../agent/copy/ranges.ts'
import type { LayoutInput, Range } from '../../../agent/copy/ranges.ts'

const MiB = 1024 * 1024

function tiles (ranges: Range[], size: number): void {
  expect(validRanges(ranges, size)).toBe(true)
}

describe('planRanges', () => {
  it('keeps a file below the multi-stream size on one range, whatever the streams', () => {
    expect(planRanges(MIN_MULTI_STREAM_BYTES - 1, 16)).toEqual([{ start: 0, end: MIN_MULTI_STREAM_BYTES - 1, done: 0 }])
    expect(planRanges(0, 4)).toEqual([{ start: 0, end: 0, done: 0 }])
  })

  it('keeps one range when one stream is asked for', () => {
    expect(planRanges(1024 * MiB, 1)).toHaveLength(1)
  })

  it('splits into k near-equal aligned ranges that tile the object', () => {
    const size = 1000 * MiB + 12345
    const ranges = planRanges(size, 4)
    expect(ranges).toHaveLength(4)
    tiles(ranges, size)
    for (const r of ranges.slice(0, -1)) expect(r.end % RANGE_ALIGN).toBe(0)
    const lengths = ranges.map(r => r.end - r.start)
    expect(Math.max(...lengths) - Math.min(...lengths)).toBeLessThanOrEqual(4 * RANGE_ALIGN)
  })

  it('never makes a range shorter than the minimum: fewer ranges than streams for a mid-sized file', () => {
    const size = MIN_MULTI_STREAM_BYTES + MiB
    const ranges = planRanges(size, 16)
    expect(ranges.length).toBe(Math.floor(size / MIN_RANGE_BYTES))
    tiles(ranges, size)
    for (const r of ranges) expect(r.end - r.start).toBeGreaterThanOrEqual(MIN_RANGE_BYTES)
  })
})

describe('validRanges', () => {
  it('refuses gaps, overlaps, a short cover and a done past its range', () => {
    expect(validRanges(undefined, 10)).toBe(false)
    expect(validRanges([], 0)).toBe(false)
    expect(validRanges([{ start: 0, end: 5, done: 0 }, { start: 6, end: 10, done: 0 }], 10)).toBe(false)
    expect(validRanges([{ start: 0, end: 6, done: 0 }, { start: 5, end: 10, done: 0 }], 10)).toBe(false)
    expect(validRanges([{ start: 0, end: 5, done: 0 }], 10)).toBe(false)
    expect(validRanges([{ start: 0, end: 5, done: 6 }, { start: 5, end: 10, done: 0 }], 10)).toBe(false)
    expect(validRanges([{ start: 0, end: 5, done: 5 }, { start: 5, end: 10, done: 2 }], 10)).toBe(true)
  })
})

describe('resumeRanges', () => {
  it('keeps every range with its own durable offset when as many are unfinished as streams', () => {
    const journaled = planRanges(256 * MiB, 4).map((r, i) => ({ ...r, done: i * MiB }))
    expect(resumeRanges(journaled, 4)).toEqual(journaled)
  })

  it('splits the longest remaining part when ranges finished, keeping its written prefix in the first half', () => {
    const size = 256 * MiB
    const journaled = planRanges(size, 4).map((r, i) => ({ ...r, done: i < 3 ? r.end - r.start : 0 }))
    const ranges = resumeRanges(journaled, 4)
    tiles(ranges, size)
    // The finished ranges stay as they were; the open one is split to keep four streams busy.
    expect(ranges.slice(0, 3)).toEqual(journaled.slice(0, 3))
    const open = ranges.filter(r => r.start + r.done < r.end)
    expect(open).toHaveLength(4)
    for (const r of open) expect(r.end - r.start).toBeGreaterThanOrEqual(MIN_RANGE_BYTES)
    expect(ranges.reduce((n, r) => n + r.done, 0)).toBe(journaled.reduce((n, r) => n + r.done, 0))
  })

  it('does not split what is left below two minimum ranges', () => {
    const journaled: Range[] = [{ start: 0, end: 64 * MiB, done: 64 * MiB }, { start: 64 * MiB, end: 128 * MiB, done: 64 * MiB - MIN_RANGE_BYTES }]
    expect(resumeRanges(journaled, 8)).toEqual(journaled)
  })

  it('never adds more unfinished ranges than streams', () => {
    const journaled = [{ start: 0, end: 4096 * MiB, done: 0 }]
    const ranges = resumeRanges(journaled, 3)
    tiles(ranges, 4096 * MiB)
    expect(ranges).toHaveLength(3)
  })
})

describe('contiguousEnd', () => {
  const ranges: Range[] = [{ start: 0, end: 10, done: 0 }, { start: 10, end: 20, done: 0 }, { start: 20, end: 30, done: 0 }]

  it('stops at the first gap', () => {
    expect(contiguousEnd(ranges, [4, 10, 10])).toBe(4)
    expect(contiguousEnd(ranges, [10, 3, 10])).toBe(13)
    expect(contiguousEnd(ranges, [10, 10, 10])).toBe(30)
  })
})

describe('chooseLayout', () => {
  const version = { size: 512 * MiB, mtime: 1000 }
  const base: LayoutInput = { previous: undefined, version, mode: 'sha256', fromZero: false, streams: 4, capable: true }

  it('plans fresh ranges for a large file from a capable source', () => {
    const layout = chooseLayout(base)
    expect(layout.kind).toBe('ranges')
    if (layout.kind === 'ranges') expect(layout).toMatchObject({ resumed: false, ranges: planRanges(version.size, 4) })
  })

  it('stays on one stream when either end cannot, or the file is small', () => {
    expect(chooseLayout({ ...base, capable: false }).kind).toBe('single')
    expect(chooseLayout({ ...base, version: { size: MiB, mtime: 1000 } }).kind).toBe('single')
    expect(chooseLayout({ ...base, streams: 1 }).kind).toBe('single')
  })

  it('resumes journaled ranges even when fewer streams are asked now', () => {
    const ranges = planRanges(version.size, 4).map(r => ({ ...r, done: MiB }))
    const layout = chooseLayout({ ...base, streams: 1, previous: { version, durableOffset: 4 * MiB, ranges } })
    expect(layout).toEqual({ kind: 'ranges', ranges, resumed: true })
  })

  it('resumes a single-stream partial on one stream', () => {
    expect(chooseLayout({ ...base, previous: { version, durableOffset: MiB } }).kind).toBe('single')
  })

  it('plans again from zero when the source changed, the mode changed or a fresh copy is asked', () => {
    const ranges = planRanges(version.size, 4).map(r => ({ ...r, done: MiB }))
    const previous = { version, durableOffset: 4 * MiB, ranges }
    for (const input of [
      { ...base, previous: { ...previous, version: { ...version, mtime: 2000 } } },
      { ...base, previous: { ...previous, checksumMode: 'blake3' as const } },
      { ...base, previous, fromZero: true }
    ]) {
      expect(chooseLayout(input)).toEqual({ kind: 'ranges', ranges: planRanges(version.size, 4), resumed: false })
    }
  })
})
