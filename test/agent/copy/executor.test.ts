import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { Blake3Hasher } from '@napi-rs/blake-hash'
import { Executor } from '../../../agent/executor.ts'
import type { Report } from '../../../agent/executor.ts'
import { newCounters } from '../../../agent/counters.ts'
import { NetworkError } from '../../../mesh/index.ts'
import type { ChecksumMode, ControlParams, Job, MeshNode } from '../../../mesh/index.ts'
import type { ProtocolPlugin } from '../../../protocols/index.ts'
import { FakeClock, MemJournal, getObject, mem, putObject, tapped, until } from './fakes.ts'
import type { Tap } from './fakes.ts'

// 16 of the mem plug-in's 64 KiB chunks.
const CHUNK = 64 * 1024
const SIZE = 16 * CHUNK
const SRC = 'file:///v/src.bin'
const DST = 'file:///v/dst.bin'

/**
 * The Executor over the in-memory plug-in, an in-memory journal and a fake
 * clock: no process, no socket, no disk. The source's reads are tapped to
 * fail, stall or damage bytes where a test says.
 */
describe('Executor', () => {
  let store: ProtocolPlugin
  let tap: Tap
  let journal: MemJournal
  let clock: FakeClock
  let counters: ReturnType<typeof newCounters>
  let reports: Report[]
  let progress: Array<ControlParams<'progress'>>
  let logged: string[]
  let executor: Executor
  let bytes: Buffer

  beforeEach(async () => {
    store = mem()
    tap = { reads: [] }
    journal = new MemJournal()
    clock = new FakeClock()
    counters = newCounters()
    reports = []
    progress = []
    logged = []
    bytes = randomBytes(SIZE)
    await putObject(store, SRC, bytes)
    executor = new Executor({
      self: 'me',
      node: undefined as unknown as MeshNode,
      plugins: { volumes: tapped(store, tap), byScheme: new Map() },
      journal,
      counters,
      report: async r => { reports.push(r) },
      progress: p => { progress.push(p) },
      log: msg => { logged.push(msg) },
      // Every chunk is a sync: the journal follows the copy chunk by chunk.
      syncEveryBytes: CHUNK,
      syncEveryMs: 1000,
      progressEveryMs: 1000,
      clock
    })
  })
  afterEach(async () => {
    await executor.stop()
  })

  const job = (attempt: number, extra: Partial<Job> = {}): Job =>
    ({ transferId: 'tr_1', attempt, source: 'agent://me/v/src.bin', destination: 'agent://me/v/dst.bin', ...extra })

  async function run (j: Job): Promise<Report> {
    const before = reports.filter(r => r.outcome !== 'verifying').length
    await executor.accept(j)
    await until(() => executor.active().length === 0, 'the attempt ended')
    const outcomes = reports.filter(r => r.outcome !== 'verifying')
    expect(outcomes.length).toBe(before + 1)
    return outcomes[outcomes.length - 1]
  }

  const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
  const blake3 = (b: Uint8Array): string => new Blake3Hasher().update(Buffer.from(b)).digest('hex')

  it('copies, reports the sha256 and leaves no journal entry once acknowledged', async () => {
    const r = await run(job(1))
    expect(r).toMatchObject({ outcome: 'succeeded', sha256: sha256(bytes), bytesDone: SIZE })
    expect((await getObject(store, DST)).equals(bytes)).toBe(true)
    expect(journal.entries.size).toBe(0)
    expect(counters.bytesReceived).toBe(SIZE)
  })

  it.each<[ChecksumMode, (b: Buffer) => Record<string, string | undefined>]>([
    ['blake3', b => ({ blake3: blake3(b), sha256: undefined })],
    ['none', () => ({ blake3: undefined, sha256: undefined })]
  ])('in checksum mode %s reports that digest only', async (mode, expected) => {
    const r = await run(job(1, { checksumMode: mode }))
    expect(r).toMatchObject({ outcome: 'succeeded', bytesDone: SIZE, ...expected(bytes) })
    expect((await getObject(store, DST)).equals(bytes)).toBe(true)
  })

  it('resumes a failed attempt from the journaled offset, after checking the kept prefix', async () => {
    tap.onChunk = (at, chunk) => {
      if (at >= SIZE / 2) throw new NetworkError('link lost')
      return chunk
    }
    const failed = await run(job(1))
    expect(failed).toMatchObject({ outcome: 'failed', error: { code: 'network' } })
    const kept = journal.entries.get('tr_1')
    expect(kept?.outcome).toBeUndefined()
    expect(kept?.durableOffset).toBe(SIZE / 2)
    expect(kept?.prefixDigest).toBe(sha256(bytes.subarray(0, SIZE / 2)))

    delete tap.onChunk
    const ok = await run(job(2))
    expect(ok).toMatchObject({ outcome: 'succeeded', sha256: sha256(bytes) })
    expect(tap.reads.slice(-1)).toEqual([SIZE / 2])
    expect(logged).toContain('resuming')
    expect((await getObject(store, DST)).equals(bytes)).toBe(true)
  })

  it('starts from zero when the kept prefix does not match its journaled digest', async () => {
    tap.onChunk = (at, chunk) => {
      if (at >= SIZE / 2) throw new NetworkError('link lost')
      return chunk
    }
    await run(job(1))
    journal.entries.get('tr_1')!.prefixDigest = sha256(Buffer.from('something else'))
    delete tap.onChunk
    const ok = await run(job(2))
    expect(ok).toMatchObject({ outcome: 'succeeded', sha256: sha256(bytes) })
    expect(tap.reads.slice(-1)).toEqual([0])
    expect(logged).toContain('kept partial does not match its journaled digest; starting from zero')
  })

  it('does not resume a partial journaled in another checksum mode', async () => {
    tap.onChunk = (at, chunk) => {
      if (at >= SIZE / 2) throw new NetworkError('link lost')
      return chunk
    }
    await run(job(1, { checksumMode: 'blake3' }))
    delete tap.onChunk
    const ok = await run(job(2))
    expect(ok).toMatchObject({ outcome: 'succeeded', sha256: sha256(bytes) })
    expect(tap.reads.slice(-1)).toEqual([0])
  })

  const damageFirstRead = (at: number, chunk: Uint8Array): Uint8Array => {
    if (tap.reads.length > 1 || at !== CHUNK) return chunk
    const bad = Uint8Array.from(chunk)
    bad[7] ^= 0xff
    return bad
  }

  it('retries once from zero after a checksum mismatch, and succeeds when the bytes arrive whole', async () => {
    tap.onChunk = damageFirstRead
    const r = await run(job(1))
    expect(r).toMatchObject({ outcome: 'succeeded', sha256: sha256(bytes) })
    expect(tap.reads).toEqual([0, 0])
    expect(logged).toContain('checksum mismatch; retrying once from zero')
    expect((await getObject(store, DST)).equals(bytes)).toBe(true)
  })

  it('fails with checksum_mismatch when the bytes arrive damaged twice, and commits nothing', async () => {
    tap.onChunk = (at, chunk) => at === CHUNK ? Uint8Array.from(chunk, (b, i) => i === 0 ? b ^ 1 : b) : chunk
    const r = await run(job(1))
    expect(r).toMatchObject({ outcome: 'failed', error: { code: 'checksum_mismatch', retryable: false } })
    expect(tap.reads).toEqual([0, 0])
    await expect(getObject(store, DST)).rejects.toThrow('no such object')
  })

  it('catches damage in the blake3 mode against the digest the source sends', async () => {
    tap.digest = () => blake3(bytes)
    tap.onChunk = (at, chunk) => at === CHUNK ? Uint8Array.from(chunk, (b, i) => i === 0 ? b ^ 1 : b) : chunk
    const r = await run(job(1, { checksumMode: 'blake3' }))
    expect(r).toMatchObject({ outcome: 'failed', error: { code: 'checksum_mismatch' } })
    await expect(getObject(store, DST)).rejects.toThrow('no such object')
  })

  it('does not retry when the bytes match the source but not the pinned checksum', async () => {
    const r = await run(job(1, { checksum: { algorithm: 'sha256', value: sha256(Buffer.from('other')) } }))
    expect(r).toMatchObject({ outcome: 'failed', error: { code: 'checksum_mismatch' } })
    expect(tap.reads).toEqual([0])
  })

  it('stops a copy canceled midway: no outcome, no journal entry, no partial', async () => {
    let release: (() => void) | undefined
    tap.onChunk = async (at, chunk, opts) => {
      if (at === SIZE / 4) {
        await new Promise<void>((resolve, reject) => {
          release = resolve
          opts.signal?.addEventListener('abort', () => reject(opts.signal?.reason), { once: true })
        })
      }
      return chunk
    }
    await executor.accept(job(1))
    await until(() => release !== undefined, 'the copy reached a quarter')
    expect(journal.entries.get('tr_1')?.durableOffset).toBeGreaterThan(0)
    await executor.cancel('tr_1')
    expect(executor.active()).toEqual([])
    expect(reports.filter(r => r.outcome !== 'verifying')).toEqual([])
    expect(journal.entries.size).toBe(0)
    expect(counters.transfersFailed).toBe(0)
    // The partial is gone: there is nothing to continue at any offset.
    await expect(store.write(new URL(DST), { offset: 1, key: 'tr_1' })).rejects.toThrow('no partial to resume')
    expect(clock.pending).toBe(0)
  })

  it('aborts an attempt superseded midway, and the new attempt continues from what the old one journaled', async () => {
    let stalled = false
    tap.onChunk = async (at, chunk, opts) => {
      if (at === SIZE / 2 && tap.reads.length === 1) {
        stalled = true
        await new Promise<void>((_resolve, reject) => opts.signal?.addEventListener('abort', () => reject(opts.signal?.reason), { once: true }))
      }
      return chunk
    }
    await executor.accept(job(1))
    await until(() => stalled, 'the first attempt stalled halfway')
    await executor.accept(job(2))
    await until(() => executor.active().length === 0, 'the second attempt ended')
    const outcomes = reports.filter(r => r.outcome !== 'verifying')
    expect(outcomes.map(r => [r.attempt, r.outcome])).toEqual([[1, 'failed'], [2, 'succeeded']])
    expect(outcomes[0].error?.message).toBe('superseded by attempt 2')
    expect(outcomes[1].sha256).toBe(sha256(bytes))
    expect(tap.reads).toEqual([0, SIZE / 2])
    expect((await getObject(store, DST)).equals(bytes)).toBe(true)
  })

  it('reports progress on the clock it was given, and stops its timer when done', async () => {
    let release: (() => void) | undefined
    tap.onChunk = async (at, chunk) => {
      if (at === SIZE / 4) await new Promise<void>(resolve => { release = resolve })
      return chunk
    }
    await executor.accept(job(1))
    await until(() => release !== undefined, 'the copy reached a quarter')
    expect(progress).toEqual([])
    clock.advance(1000)
    expect(progress).toEqual([{ transferId: 'tr_1', attempt: 1, bytesDone: SIZE / 4, bytesTotal: SIZE }])
    release!()
    await until(() => executor.active().length === 0, 'the copy ended')
    expect(progress.at(-1)).toMatchObject({ bytesDone: SIZE })
    expect(clock.pending).toBe(0)
  })
})
