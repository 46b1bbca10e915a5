import type { ChecksumMode } from '../../mesh/index.ts'
import type { ObjectVersion } from '../../protocols/index.ts'
import type { RangeCheckpoint } from '../journal.ts'
import { sameVersion } from './resume.ts'

/**
 * Below this a file always goes on one stream. Each extra stream costs a
 * stream open, a ticket check and a stat at the source, and the ordered hash
 * re-reads from the partial what a later range wrote ahead of it; at the
 * ~150-300 MB/s one stream carries here, 64 MiB is well under a second of
 * transfer, where that overhead is no longer small beside what a split saves.
 * rclone's --multi-thread-cutoff has a similar default (256 MiB).
 */
export const MIN_MULTI_STREAM_BYTES = 64 * 1024 * 1024

/**
 * A range is at least this long, so that each carries a sync interval of
 * bytes (the agent's default --sync-every is 16 MiB) and a crash loses at
 * most what a single stream would lose per range.
 */
export const MIN_RANGE_BYTES = 16 * 1024 * 1024

/** Range boundaries fall on 1 MiB: whole pages and file-system blocks on every disk. */
export const RANGE_ALIGN = 1024 * 1024

/** One range of the object as planned: [start, end), of which `done` bytes from start are durable. */
export type Range = RangeCheckpoint

/**
 * Splits `size` bytes into at most `streams` ranges of near-equal length on
 * aligned boundaries, none shorter than MIN_RANGE_BYTES. One range means: use
 * the single-stream copy.
 */
export function planRanges (size: number, streams: number): Range[] {
  if (size < MIN_MULTI_STREAM_BYTES || streams <= 1) return [{ start: 0, end: size, done: 0 }]
  const k = Math.max(1, Math.min(streams, Math.floor(size / MIN_RANGE_BYTES)))
  // Boundaries rounded down to the alignment: each range is then at least floor(size / k) aligned
  // units long, which k ≤ size / MIN_RANGE_BYTES keeps at or above the minimum.
  const bounds = [...Array.from({ length: k }, (_, i) => Math.floor(i * size / k / RANGE_ALIGN) * RANGE_ALIGN), size]
  return bounds.slice(0, -1).map((start, i) => ({ start, end: bounds[i + 1], done: 0 }))
}

/** The journaled ranges tile [0, size) in order, each with done within it. */
export function validRanges (ranges: readonly Range[] | undefined, size: number): ranges is Range[] {
  if (ranges === undefined || ranges.length === 0) return false
  let at = 0
  for (const r of ranges) {
    if (r.start !== at || r.end <= r.start || !Number.isSafeInteger(r.done) || r.done < 0 || r.done > r.end - r.start) return false
    at = r.end
  }
  return at === size
}

/**
 * After a crash each range resumes from its own durable offset. When fewer
 * ranges are left unfinished than streams are allowed, the longest remaining
 * part is split (its written prefix stays with the first half), so the
 * streams stay busy to the end rather than one range finishing alone.
 */
export function resumeRanges (journaled: readonly Range[], streams: number): Range[] {
  const ranges = journaled.map(r => ({ ...r }))
  // Bounded: each round adds one range, and at most `streams` are unfinished.
  for (let round = 0; round < streams; round++) {
    const open = ranges.filter(r => r.start + r.done < r.end)
    if (open.length >= streams) break
    const longest = open.reduce<Range | undefined>((a, r) => a === undefined || remaining(r) > remaining(a) ? r : a, undefined)
    if (longest === undefined || remaining(longest) < 2 * MIN_RANGE_BYTES) break
    const cut = longest.start + longest.done + Math.ceil(remaining(longest) / 2 / RANGE_ALIGN) * RANGE_ALIGN
    if (cut >= longest.end) break
    ranges.splice(ranges.indexOf(longest) + 1, 0, { start: cut, end: longest.end, done: 0 })
    longest.end = cut
  }
  return ranges
}

function remaining (r: Range): number {
  return r.end - r.start - r.done
}

/** Bytes durable over all ranges. */
export function durableBytes (ranges: readonly Range[]): number {
  return ranges.reduce((n, r) => n + r.done, 0)
}

/** How far from 0 the object is written without a gap, given each range's bytes written from its start. */
export function contiguousEnd (ranges: readonly Range[], written: readonly number[]): number {
  let end = 0
  for (const [i, r] of ranges.entries()) {
    end = r.start + written[i]
    if (end < r.end) return end
  }
  return end
}

export interface LayoutInput {
  previous: { version: ObjectVersion, durableOffset: number, checksumMode?: ChecksumMode, ranges?: Range[] } | undefined
  /** The source as stat sees it now. */
  version: ObjectVersion
  mode: ChecksumMode
  /** A checksum mismatch asked for a fresh copy. */
  fromZero: boolean
  streams: number
  /** Both ends can: the source reads any range and sends a whole-object digest, the destination writes at offsets. */
  capable: boolean
}

export type Layout = { kind: 'single' } | { kind: 'ranges', ranges: Range[], resumed: boolean }

/**
 * One stream or several. A partial keeps the layout it was started with:
 * journaled ranges resume as ranges (whatever `streams` says now), a
 * single-stream partial resumes on one stream. Pure: the caller still finds
 * whether the partial is there.
 */
export function chooseLayout (i: LayoutInput): Layout {
  if (!i.capable) return { kind: 'single' }
  const p = i.previous
  const resumable = p !== undefined && !i.fromZero && sameVersion(p.version, i.version) && (p.checksumMode ?? 'sha256') === i.mode
  if (resumable && validRanges(p.ranges, i.version.size)) return { kind: 'ranges', ranges: resumeRanges(p.ranges, i.streams), resumed: true }
  if (resumable && p.ranges === undefined && p.durableOffset > 0) return { kind: 'single' }
  const ranges = planRanges(i.version.size, i.streams)
  return ranges.length > 1 ? { kind: 'ranges', ranges, resumed: false } : { kind: 'single' }
}
