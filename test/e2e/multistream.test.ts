import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest'
import { writeFile, readdir } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { Blake3Hasher } from '@napi-rs/blake-hash'
import { TestMesh, sha256File } from '../helpers/mesh.ts'

const MiB = 1024 * 1024
// Above the 64 MiB below which a file always goes on one stream (agent/copy/ranges.ts): four ranges of 16.5 MiB.
const SIZE = 66 * MiB

async function blake3File (file: string): Promise<string> {
  const h = new Blake3Hasher()
  for await (const chunk of createReadStream(file, { highWaterMark: MiB })) h.update(chunk as Buffer)
  return h.digest('hex')
}

interface Record { id: string, state: string, streams?: number, sha256?: string, blake3?: string, lastError?: { code: string }, attempt: number }
interface Ranged { transferId: string, durableOffset: number, ranges?: Array<{ start: number, end: number, done: number }> }

/** Bytes durable over all ranges of a journal entry. */
function kept (e: Ranged): number {
  return (e.ranges ?? []).reduce((n, r) => n + r.done, 0)
}

async function record (mesh: TestMesh, id: string): Promise<Record> {
  return (await mesh.api('GET', `/v1/transfers/${id}`)).body as Record
}

/** Multi-stream transfers between real agents on loopback: ranges on several data streams, one whole-object digest. */
describe('several streams per transfer', () => {
  let mesh: TestMesh
  let source: string

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    // compute-4 pulls on four streams by default; compute-1 only when the transfer asks.
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('compute-1'), mesh.startAgent('compute-4', ['--streams', '4'])])
    source = join(mesh.volume('store-1'), 'big.bin')
    await writeFile(source, randomBytes(SIZE))
  })
  afterAll(async () => { await mesh?.stop() })

  it('reassembles four ranges byte-exact, checked by the whole object\'s sha256', async () => {
    const before = (await mesh.status('store-1')).counters.dataRequests
    const t = await mesh.submit('agent://store-1/vol/big.bin', 'agent://compute-1/vol/sha.bin', { streams: 4 })
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    const digest = await sha256File(source)
    expect(done.sha256).toBe(digest)
    expect((await record(mesh, t.id)).streams).toBe(4)
    expect(await sha256File(join(mesh.volume('compute-1'), 'sha.bin'))).toBe(digest)
    // Four range requests and the digest request, beside the stats (a single stream makes one read).
    expect((await mesh.status('store-1')).counters.dataRequests - before).toBeGreaterThanOrEqual(5)
    expect((await readdir(mesh.volume('compute-1'))).filter(n => n.includes('sha.bin'))).toEqual(['sha.bin'])
  })

  it('takes the agent\'s --streams when the transfer does not say, in checksum mode blake3', async () => {
    const before = (await mesh.status('store-1')).counters.dataRequests
    const t = await mesh.submit('agent://store-1/vol/big.bin', 'agent://compute-4/vol/b3.bin', { checksumMode: 'blake3' })
    await mesh.waitForState(t.id, ['succeeded', 'failed'])
    const r = await record(mesh, t.id)
    expect(r.state).toBe('succeeded')
    expect(r.streams).toBeUndefined()
    const digest = await blake3File(source)
    expect(r.blake3).toBe(digest)
    expect(await blake3File(join(mesh.volume('compute-4'), 'b3.bin'))).toBe(digest)
    expect((await mesh.status('store-1')).counters.dataRequests - before).toBeGreaterThanOrEqual(5)
  })

  it('fails with checksum_mismatch when every range arrives damaged, and leaves nothing at the target', async () => {
    await mesh.startAgent('broken', [], {}, { faults: 'corrupt-data=1000' })
    await writeFile(join(mesh.volume('broken'), 'bad.bin'), randomBytes(SIZE))
    const t = await mesh.submit('agent://broken/vol/bad.bin', 'agent://compute-1/vol/bad.bin', { streams: 4, retries: 0 })
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'], 120_000)
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('checksum_mismatch')
    expect((await readdir(mesh.volume('compute-1'))).filter(n => n.includes('bad.bin'))).toEqual([])
  })

  it('retries once from zero when one range arrives damaged, and then delivers the right bytes', async () => {
    await mesh.startAgent('flaky', [], {}, { faults: 'corrupt-data=1' })
    const file = join(mesh.volume('flaky'), 'once.bin')
    await writeFile(file, randomBytes(SIZE))
    const t = await mesh.submit('agent://flaky/vol/once.bin', 'agent://compute-1/vol/once.bin', { streams: 4 })
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'], 120_000)
    expect(done.state).toBe('succeeded')
    const digest = await sha256File(file)
    expect(done.sha256).toBe(digest)
    expect(await sha256File(join(mesh.volume('compute-1'), 'once.bin'))).toBe(digest)
  })
})

// The source is slowed down so that the test can act while bytes are in flight.
const CRASH_SIZE = 96 * MiB
const THROTTLE = ['--max-upload-rate', '24MiB', '--sync-every', '2MiB']

describe('several streams per transfer: SIGKILL mid-transfer', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.stop(); mesh = undefined })

  async function start (): Promise<{ mesh: TestMesh, digest: string, id: string }> {
    const m = await TestMesh.create()
    mesh = m
    await m.startCoordinator()
    await Promise.all([m.startAgent('store-1', THROTTLE), m.startAgent('compute-1', ['--sync-every', '2MiB'])])
    const file = join(m.volume('store-1'), 'disk.img')
    await writeFile(file, randomBytes(CRASH_SIZE))
    const t = await m.submit('agent://store-1/vol/disk.img', 'agent://compute-1/vol/disk.img', { streams: 4 })
    return { mesh: m, digest: await sha256File(file), id: t.id }
  }

  /** Waits until every one of the four ranges has durable bytes and 40% of the file is journaled; returns the entry. */
  async function journaledMidway (m: TestMesh, id: string): Promise<Ranged> {
    const entry = async (): Promise<Ranged | undefined> => (await m.status('compute-1')).journal.find(e => e.transferId === id) as Ranged | undefined
    await m.until(async () => {
      const e = await entry()
      return e?.ranges?.length === 4 && e.ranges.every(r => r.done > 0) && kept(e) >= CRASH_SIZE * 0.4
    }, 60_000, 'four ranges journaled midway')
    return (await entry()) as Ranged
  }

  it('resumes every range from its own offset after the destination agent is killed', async () => {
    const s = await start()
    const entry = await journaledMidway(s.mesh, s.id)
    await s.mesh.kill('compute-1')
    expect(await readdir(s.mesh.volume('compute-1'))).not.toContain('disk.img')
    const servedAtKill = (await s.mesh.status('store-1')).counters.bytesServed
    await s.mesh.restartAgent('compute-1')

    const done = await s.mesh.waitForState(s.id, ['succeeded', 'failed'], 120_000)
    expect(done.state).toBe('succeeded')
    expect(done.sha256).toBe(s.digest)
    expect(done.attempt).toBeGreaterThanOrEqual(2)
    expect(await sha256File(join(s.mesh.volume('compute-1'), 'disk.img'))).toBe(s.digest)
    expect(await readdir(s.mesh.volume('compute-1'))).toEqual(['disk.img'])
    // The restarted agent received only what its ranges were missing, and the source served fewer bytes than the whole.
    expect((await s.mesh.status('compute-1')).counters.bytesReceived).toBeLessThanOrEqual(CRASH_SIZE - kept(entry))
    expect((await s.mesh.status('store-1')).counters.bytesServed - servedAtKill).toBeLessThan(CRASH_SIZE)
  })

  it('resumes every range from its own offset after the source agent is killed', async () => {
    const s = await start()
    const entry = await journaledMidway(s.mesh, s.id)
    await s.mesh.kill('store-1')
    await s.mesh.restartAgent('store-1')

    const done = await s.mesh.waitForState(s.id, ['succeeded', 'failed'], 120_000)
    expect(done.state).toBe('succeeded')
    expect(done.sha256).toBe(s.digest)
    expect(done.attempt).toBeGreaterThanOrEqual(2)
    expect(await sha256File(join(s.mesh.volume('compute-1'), 'disk.img'))).toBe(s.digest)
    // The restarted source counts from zero: it served only what the ranges had not made durable.
    expect((await s.mesh.status('store-1')).counters.bytesServed).toBeLessThanOrEqual(CRASH_SIZE - kept(entry))
  })
})
