import { describe, it, expect } from 'vitest'
import { DurableSink } from '../../../agent/copy/durable-sink.ts'
import { throttled } from '../../../agent/copy/stages.ts'
import { decideResume } from '../../../agent/copy/resume.ts'
import { TokenBucket } from '../../../agent/rate-limit.ts'
import type { JournalEntry } from '../../../agent/journal.ts'
import type { Writer } from '../../../protocols/index.ts'
import { FakeClock, MemJournal, until } from './fakes.ts'

/** A writer whose sync() completes only when the test says, with the durable length the test gives. */
function slowDisk (): { writer: Writer, written: number, syncs: Array<(durable: number) => void>, failSync?: Error } {
  const disk: ReturnType<typeof slowDisk> = {
    written: 0,
    syncs: [],
    writer: {
      write: async chunk => { disk.written += chunk.byteLength },
      sync: async () => {
        if (disk.failSync !== undefined) throw disk.failSync
        return await new Promise<number>(resolve => disk.syncs.push(resolve))
      },
      commit: async () => {},
      abort: async () => {}
    }
  }
  return disk
}

const entry = (): JournalEntry => ({ transferId: 't', attempt: 1, source: 's', destination: 'd', version: { size: 100, mtime: 0 }, durableOffset: 0, updatedAt: 0 })

describe('DurableSink', () => {
  it('journals an offset only once the writer reported those bytes synced, with the digest of exactly those bytes', async () => {
    const disk = slowDisk()
    const journal = new MemJournal()
    const clock = new FakeClock()
    let hashed = 0
    const sink = new DurableSink({ writer: disk.writer, journal, entry: entry(), prefixDigest: () => `digest of ${hashed}`, clock, syncEveryBytes: 20, syncEveryMs: 1000 })
    const write = async (n: number): Promise<void> => { hashed += n; await sink.write(new Uint8Array(n)) }
    await write(10)
    expect(disk.syncs).toHaveLength(0)
    await write(10)
    // The sync of the first 20 bytes runs beside the copy: more bytes go in before it completes…
    expect(disk.syncs).toHaveLength(1)
    await write(10)
    expect(journal.commits).toEqual([])
    // …and nothing is journaled until the disk has them.
    disk.syncs[0](20)
    await until(() => journal.commits.length === 1, 'the offset journaled')
    expect(journal.entries.get('t')).toMatchObject({ durableOffset: 20, prefixDigest: 'digest of 20' })
    expect(sink.offset).toBe(30)
  })

  it('journals nothing when the writer reports fewer bytes durable than were written', async () => {
    const disk = slowDisk()
    const journal = new MemJournal()
    const sink = new DurableSink({ writer: disk.writer, journal, entry: entry(), prefixDigest: () => 'd', clock: new FakeClock(), syncEveryBytes: 20, syncEveryMs: 1000 })
    await sink.write(new Uint8Array(20))
    disk.syncs[0](19)
    await sink.settle()
    expect(journal.commits).toEqual([])
  })

  it('syncs after syncEveryMs of its clock even when few bytes came', async () => {
    const disk = slowDisk()
    const clock = new FakeClock()
    const sink = new DurableSink({ writer: disk.writer, journal: new MemJournal(), entry: entry(), prefixDigest: () => 'd', clock, syncEveryBytes: 1 << 30, syncEveryMs: 1000 })
    await sink.write(new Uint8Array(1))
    clock.advance(999)
    await sink.write(new Uint8Array(1))
    expect(disk.syncs).toHaveLength(0)
    clock.advance(1)
    await sink.write(new Uint8Array(1))
    expect(disk.syncs).toHaveLength(1)
  })

  it('hashes a large chunk while its write is under way, and journals the digest of exactly the bytes synced', async () => {
    const journal = new MemJournal()
    const pending: Array<() => void> = []
    let written = 0
    const writer: Writer = {
      // A write that completes only when the test says: the disk is busy with it.
      write: async chunk => { await new Promise<void>(resolve => pending.push(resolve)); written += chunk.byteLength },
      sync: async () => written,
      commit: async () => {},
      abort: async () => {}
    }
    let hashed = 0
    const hashedWhileWriting: boolean[] = []
    const sink = new DurableSink({
      writer,
      journal,
      entry: entry(),
      prefixDigest: () => `digest of ${hashed}`,
      clock: new FakeClock(),
      syncEveryBytes: 2 << 20,
      syncEveryMs: 1000,
      hash: chunk => { hashedWhileWriting.push(pending.length === 1); hashed += chunk.byteLength }
    })
    for (let i = 0; i < 2; i++) {
      const write = sink.write(new Uint8Array(1 << 20))
      await until(() => hashed === (i + 1) << 20, `chunk ${i} hashed`)
      expect(sink.offset).toBe(i << 20)
      pending.shift()?.()
      await write
    }
    expect(hashedWhileWriting).toEqual([true, true])
    await sink.settle()
    expect(journal.entries.get('t')).toMatchObject({ durableOffset: 2 << 20, prefixDigest: `digest of ${2 << 20}` })
  })

  it('with writeBehind, takes the next chunk while the previous one is being written, and journals exactly the bytes a sync covered', async () => {
    const journal = new MemJournal()
    // A disk whose writes complete only when the test says, one after the other as a file writer's do; a sync waits for the writes before it.
    const pending: Array<(err?: Error) => void> = []
    let written = 0
    let chain: Promise<unknown> = Promise.resolve()
    const serial = <T>(fn: () => Promise<T>): Promise<T> => { const p = chain.then(fn); chain = p.catch(() => {}); return p }
    const writer: Writer = {
      write: async chunk => await serial(async () => {
        await new Promise<void>((resolve, reject) => pending.push(err => { if (err === undefined) resolve(); else reject(err) }))
        written += chunk.byteLength
      }),
      sync: async () => await serial(async () => written),
      commit: async () => {},
      abort: async () => {}
    }
    let hashed = 0
    const sink = new DurableSink({
      writer,
      journal,
      entry: entry(),
      prefixDigest: () => `digest of ${hashed}`,
      clock: new FakeClock(),
      syncEveryBytes: 3,
      syncEveryMs: 1000,
      hash: chunk => { hashed += chunk.byteLength },
      writeBehind: true
    })
    // The first write is handed over and left in flight.
    await sink.write(new Uint8Array(1))
    expect(sink.offset).toBe(0)
    // The second is handed over and hashed while the first is under way; it returns once the first is done.
    const second = sink.write(new Uint8Array(2))
    await until(() => hashed === 3, 'the second chunk hashed before the first write ended')
    expect(pending).toHaveLength(1)
    pending.shift()?.()
    await second
    expect(sink.offset).toBe(1)
    // 3 bytes handed over: a sync started, queued behind the second write; it covers all 3 bytes and their digest.
    await until(() => pending.length === 1, 'the second write reached the disk')
    pending.shift()?.()
    await sink.settle()
    expect(sink.offset).toBe(3)
    expect(journal.entries.get('t')).toMatchObject({ durableOffset: 3, prefixDigest: 'digest of 3' })
    // A write that fails: the next call reports it.
    await sink.write(new Uint8Array(1))
    await until(() => pending.length === 1, 'the fourth write reached the disk')
    pending.shift()?.(new Error('EIO'))
    await expect(sink.write(new Uint8Array(1))).rejects.toThrow('EIO')
  })

  it('fails the next write with the error of a sync that failed', async () => {
    const disk = slowDisk()
    disk.failSync = new Error('EIO')
    const sink = new DurableSink({ writer: disk.writer, journal: new MemJournal(), entry: entry(), prefixDigest: () => 'd', clock: new FakeClock(), syncEveryBytes: 1, syncEveryMs: 1000 })
    await sink.write(new Uint8Array(1))
    await expect(sink.write(new Uint8Array(1))).rejects.toThrow('EIO')
  })
})

describe('the throttle', () => {
  it('lets a burst through at once and holds the rest until its clock says the rate allows it', async () => {
    const clock = new FakeClock()
    const bucket = new TokenBucket(1000, 100, clock)
    await bucket.take(100)
    let passed = false
    const p = bucket.take(500).then(() => { passed = true })
    await until(() => clock.pending === 1, 'the take waits')
    clock.advance(499)
    await new Promise(resolve => setImmediate(resolve))
    expect(passed).toBe(false)
    clock.advance(1)
    await p
    expect(passed).toBe(true)
  })

  it('passes chunks on in order, each after its bytes were taken, and gives up when aborted', async () => {
    const clock = new FakeClock()
    const bucket = new TokenBucket(1000, 10, clock)
    async function * source (): AsyncGenerator<Uint8Array> { for (let i = 0; i < 3; i++) yield new Uint8Array([i, 0, 0, 0, 0, 0, 0, 0, 0, 0]) }
    const out: number[] = []
    const controller = new AbortController()
    const done = (async () => { for await (const c of throttled(source(), bucket, controller.signal)) out.push(c[0]) })()
    await until(() => out.length === 1 && clock.pending === 1, 'the second chunk waits for tokens')
    clock.advance(10)
    await until(() => out.length === 2 && clock.pending === 1, 'the third chunk waits for tokens')
    controller.abort(new Error('stop'))
    await expect(done).rejects.toThrow('stop')
    expect(out).toEqual([0, 1])
  })
})

describe('the resume decision', () => {
  const version = { size: 100, mtime: 5 }
  const previous = { ...entry(), version, durableOffset: 40, prefixDigest: 'p' }
  const base = { previous, version, mode: 'sha256' as const, fromZero: false, canResume: true }

  it('continues from the journaled offset with its digest', () => {
    expect(decideResume(base)).toEqual({ resume: true, offset: 40, prefixDigest: 'p' })
  })

  it.each([
    ['asked to', { fromZero: true }],
    ['source changed', { version: { size: 100, mtime: 6 } }],
    ['source changed', { version: { size: 30, mtime: 5 } }],
    ['plug-ins cannot resume', { canResume: false }],
    ['checksum mode changed', { mode: 'blake3' as const }],
    ['written in ranges', { previous: { ...previous, ranges: [{ start: 0, end: 50, done: 20 }, { start: 50, end: 100, done: 20 }] } }]
  ])('starts from zero (%s)', (why, change) => {
    expect(decideResume({ ...base, ...change })).toEqual({ resume: false, offset: 0, why })
  })

  it('starts from zero without a word when nothing was kept', () => {
    expect(decideResume({ ...base, previous: undefined })).toEqual({ resume: false, offset: 0 })
  })
})
