import { describe, it, expect, beforeEach } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { Blake3Hasher } from '@napi-rs/blake-hash'
import { copyFile } from '../../../agent/copy/multi-copy.ts'
import type { CopyDeps } from '../../../agent/copy/copy.ts'
import { MIN_MULTI_STREAM_BYTES, planRanges } from '../../../agent/copy/ranges.ts'
import { newCounters } from '../../../agent/counters.ts'
import { TokenBucket } from '../../../agent/rate-limit.ts'
import { ChecksumMismatchError, NetworkError, NotFoundError, parseLocation } from '../../../mesh/index.ts'
import type { ChecksumMode, Job } from '../../../mesh/index.ts'
import type { ProtocolPlugin } from '../../../protocols/index.ts'
import type { Resolved } from '../../../agent/resolve.ts'
import { FakeClock, MemJournal, getObject, mem, putObject, tapped } from './fakes.ts'
import type { Tap } from './fakes.ts'

// Just above the size below which a file always goes on one stream: four ranges of 16 MiB and a bit.
const SIZE = MIN_MULTI_STREAM_BYTES + 3 * 65536 + 123
const SRC = 'agent://far/v/src.bin'
const DST = 'file:///v/dst.bin'

/**
 * The multi-stream copy over the in-memory plug-in (its source dressed as
 * the agent plug-in, whose ranges and digest request it takes), an in-memory
 * journal and a fake clock. The end-to-end tests run it between real agents.
 */
describe('copyFile on several streams', () => {
  let source: ProtocolPlugin
  let tap: Tap
  let destination: ProtocolPlugin
  let journal: MemJournal
  let deps: CopyDeps
  let bytes: Buffer
  let progress: number[]

  beforeEach(async () => {
    source = mem({ scheme: 'agent' })
    destination = mem()
    tap = { reads: [] }
    journal = new MemJournal()
    progress = []
    bytes = randomBytes(SIZE)
    await putObject(source, 'agent://far/v/src.bin', bytes)
    deps = {
      journal,
      counters: newCounters(),
      clock: new FakeClock(),
      report: async () => {},
      progress: p => { progress.push(p.bytesDone) },
      log: () => {},
      // A sync every 4 MiB: each range journals several offsets.
      syncEveryBytes: 4 * 1024 * 1024,
      syncEveryMs: 60_000,
      progressEveryMs: 1000
    }
  })

  function job (mode: ChecksumMode = 'sha256'): Job {
    return { transferId: 't1', attempt: 1, source: SRC, destination: DST, checksumMode: mode }
  }

  function ends (): { src: Resolved, dst: Resolved } {
    return {
      src: { plugin: tapped(source, tap), url: new URL('agent://far/v/src.bin'), location: parseLocation(SRC, 'source') },
      dst: { plugin: destination, url: new URL('file:///v/dst.bin'), location: parseLocation(DST, 'destination') }
    }
  }

  const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

  it('reassembles four ranges byte-exact, with the whole object\'s sha256 checked against the source\'s', async () => {
    tap.digest = () => sha256(bytes)
    const { src, dst } = ends()
    const result = await copyFile(deps, job(), src, dst, false, new AbortController().signal, 4)
    expect(result).toEqual({ bytes: SIZE, digest: { algorithm: 'sha256', value: sha256(bytes) } })
    expect((await getObject(destination, DST)).equals(bytes)).toBe(true)
    // Four ranges from their starts, and the digest request from the end.
    expect(tap.reads.sort((a, b) => a - b)).toEqual([...planRanges(SIZE, 4).map(r => r.start), SIZE])
    expect(progress.at(-1)).toBe(SIZE)
  })

  it('hashes in blake3 when the transfer asks', async () => {
    const blake3 = new Blake3Hasher().update(bytes).digest('hex')
    tap.digest = () => blake3
    const { src, dst } = ends()
    const result = await copyFile(deps, job('blake3'), src, dst, false, new AbortController().signal, 4)
    expect(result.digest).toEqual({ algorithm: 'blake3', value: blake3 })
  })

  it('resumes every range from its own journaled offset after a failure midway', async () => {
    tap.digest = () => sha256(bytes)
    // Half way into the last range: the other ranges are about as far into theirs.
    const failAt = planRanges(SIZE, 4)[3].start + 8 * 1024 * 1024
    let failed = false
    tap.onChunk = (at, chunk) => {
      if (!failed && at >= failAt) {
        failed = true
        throw new NetworkError('link lost')
      }
      return chunk
    }
    const { src, dst } = ends()
    await expect(copyFile(deps, job(), src, dst, false, new AbortController().signal, 4)).rejects.toBeInstanceOf(NetworkError)
    // The failed stream stopped the others at their next chunk: they did not run on to the ends of their ranges.
    expect(deps.counters.bytesReceived).toBeLessThan(SIZE * 0.75)
    const kept = await journal.get('t1')
    expect(kept?.ranges).toHaveLength(4)
    const done = kept?.ranges?.map(r => r.done) ?? []
    expect(done.some(d => d > 0)).toBe(true)
    // durableOffset stays a prefix without a gap, as an agent without ranges reads it: the first range's.
    expect(kept?.durableOffset).toBe(done[0])
    tap.reads = []
    const result = await copyFile(deps, { ...job(), attempt: 2 }, src, dst, false, new AbortController().signal, 4)
    expect(result.digest?.value).toBe(sha256(bytes))
    expect((await getObject(destination, DST)).equals(bytes)).toBe(true)
    // Each unfinished range was read again from its start plus what it had made durable, not from its start.
    const starts = kept?.ranges?.filter(r => r.start + r.done < r.end).map(r => r.start + r.done) ?? []
    expect(tap.reads.filter(r => r !== SIZE).sort((a, b) => a - b)).toEqual(starts.sort((a, b) => a - b))
  })

  it('fails with checksum_mismatch when a range arrives damaged, and commits nothing', async () => {
    tap.digest = () => sha256(bytes)
    tap.onChunk = (at, chunk) => {
      if (at !== 32 * 1024 * 1024) return chunk
      const bad = Buffer.from(chunk)
      bad[0] ^= 0xff
      return bad
    }
    const { src, dst } = ends()
    await expect(copyFile(deps, job(), src, dst, false, new AbortController().signal, 4)).rejects.toBeInstanceOf(ChecksumMismatchError)
    await expect(getObject(destination, DST)).rejects.toBeInstanceOf(NotFoundError)
    expect((await journal.get('t1'))?.ranges).toBeUndefined()
  })

  it('takes every stream\'s bytes from the agent\'s one download bucket', async () => {
    tap.digest = () => sha256(bytes)
    const taken: number[] = []
    // A bucket large enough never to wait: what is counted is who takes from it.
    const bucket = new (class extends TokenBucket {
      override async take (n: number, signal?: AbortSignal): Promise<void> {
        taken.push(n)
        await super.take(n, signal)
      }
    })(1e12, 1e12, deps.clock)
    const { src, dst } = ends()
    await copyFile({ ...deps, download: bucket }, job(), src, dst, false, new AbortController().signal, 4)
    expect(taken.reduce((a, b) => a + b, 0)).toBe(SIZE)
  })

  it('keeps a plug-in source read via another agent on one stream: its digest would fetch it from its origin again', async () => {
    tap.digest = () => sha256(bytes)
    const { src, dst } = ends()
    const via = { ...src, location: parseLocation('https://example.com/src.bin?via=far', 'source') }
    await copyFile(deps, job(), via, dst, false, new AbortController().signal, 4)
    expect(tap.reads).toEqual([0])
  })

  it('keeps a small file on one stream whatever is asked', async () => {
    const small = randomBytes(1024 * 1024)
    await putObject(source, 'agent://far/v/src.bin', small)
    tap.digest = () => sha256(small)
    const { src, dst } = ends()
    await copyFile(deps, job(), src, dst, false, new AbortController().signal, 16)
    expect(tap.reads).toEqual([0])
    expect((await getObject(destination, DST)).equals(small)).toBe(true)
  })
})
