import { describe, it, expect, afterEach } from 'vitest'
import { writeFile, readdir } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { TestMesh, sha256File } from '../helpers/mesh.ts'

const MiB = 1024 * 1024
const SIZE = 16 * MiB
const PIECE = 1 * MiB
// Every agent's upload is capped so that pieces must spread between destinations.
const CAP = ['--max-upload-rate', '8MiB']

interface Distribution {
  id: string
  state: string
  sha256?: string
  destinations: Array<{ agent: string, state: string, bytesDone: number, sha256?: string, lastError?: { code: string } }>
  lastError?: { code: string, message: string }
}

/** `faults`: by destination, faults composed into it (TestMesh.startAgent). */
async function setup (destinations: string[], faults: Record<string, string> = {}, cap = CAP): Promise<{ mesh: TestMesh, digest: string }> {
  const mesh = await TestMesh.create()
  await mesh.startCoordinator(['--piece-size', String(PIECE)])
  await Promise.all([mesh.startAgent('seed', cap), ...destinations.map(async d => await mesh.startAgent(d, cap, {}, { faults: faults[d] }))])
  const file = join(mesh.volume('seed'), 'image.raw')
  await writeFile(file, randomBytes(SIZE))
  return { mesh, digest: await sha256File(file) }
}

async function submit (mesh: TestMesh, destinations: string[]): Promise<Distribution> {
  const res = await mesh.api('POST', '/v1/transfers', { source: 'agent://seed/vol/image.raw', destinations: destinations.map(d => `agent://${d}/vol/image.raw`) })
  expect(res.status).toBe(201)
  return res.body as Distribution
}

describe('one image to many hosts (peer-to-peer distribution)', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.stop(); mesh = undefined })

  it('delivers to 4 destinations, each verified, with the source uploading less than 1.5 × the file', async () => {
    const dests = ['d1', 'd2', 'd3', 'd4']
    const s = await setup(dests)
    mesh = s.mesh
    const d = await submit(mesh, dests)
    expect(d.destinations.map(x => x.state)).toEqual(['queued', 'queued', 'queued', 'queued'])
    const done = await mesh.waitForState(d.id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
    expect(done.state).toBe('succeeded')
    expect(done.sha256).toBe(s.digest)
    for (const dest of done.destinations) {
      expect(dest.state).toBe('succeeded')
      expect(dest.sha256).toBe(s.digest)
      expect(await sha256File(join(mesh.volume(dest.agent), 'image.raw'))).toBe(s.digest)
      expect(await readdir(mesh.volume(dest.agent))).toEqual(['image.raw'])
    }
    const sourceUpload = (await mesh.status('seed')).counters.bytesServed
    const peerUpload = (await Promise.all(dests.map(async n => (await mesh!.status(n)).counters.bytesServed))).reduce((a, b) => a + b, 0)
    // Counted by the agents, not timed: the seed sent each piece about once, the destinations the rest.
    console.log(`swarm of ${dests.length}: seed uploaded ${(sourceUpload / SIZE).toFixed(2)} × F, destinations ${(peerUpload / SIZE).toFixed(2)} × F`)
    expect(sourceUpload).toBeLessThan(1.5 * SIZE)
    expect(sourceUpload + peerUpload).toBeGreaterThanOrEqual(dests.length * SIZE)
    expect(peerUpload).toBeGreaterThan(0)
  })

  it('drops a peer that serves corrupt pieces, and every other destination still ends with the right digest', async () => {
    const dests = ['d1', 'd2', 'bad']
    const s = await setup(dests, { bad: 'corrupt-pieces' })
    mesh = s.mesh
    const d = await submit(mesh, dests)
    const done = await mesh.waitForState(d.id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
    expect(done.state).toBe('succeeded')
    for (const name of ['d1', 'd2']) expect(await sha256File(join(mesh.volume(name), 'image.raw'))).toBe(s.digest)
    const dropped = (await mesh.status('d1')).counters.swarmPeersDropped + (await mesh.status('d2')).counters.swarmPeersDropped
    expect(dropped).toBeGreaterThanOrEqual(1)
    expect((await mesh.status('bad')).counters.swarmPeersDropped).toBe(0)
  })

  it('resumes a destination killed mid-distribution from its journal of verified pieces', async () => {
    const dests = ['d1', 'd2']
    const s = await setup(dests)
    mesh = s.mesh
    const d = await submit(mesh, dests)
    await mesh.until(async () => {
      const t = await mesh!.transfer(d.id) as unknown as Distribution
      return (t.destinations.find(x => x.agent === 'd2')?.bytesDone ?? 0) >= SIZE / 4
    }, 60_000, 'a quarter of the pieces at d2')
    await mesh.kill('d2')
    await mesh.restartAgent('d2')
    const done = await mesh.waitForState(d.id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
    expect(done.state).toBe('succeeded')
    expect(await sha256File(join(mesh.volume('d2'), 'image.raw'))).toBe(s.digest)
    // The restarted agent fetched only what its journal did not hold.
    expect((await mesh.status('d2')).counters.bytesReceived).toBeLessThanOrEqual(SIZE - SIZE / 4)
  })

  it('cancels one destination while the others carry on', async () => {
    const mesh0 = await TestMesh.create()
    mesh = mesh0
    await mesh0.startCoordinator(['--piece-size', String(PIECE)])
    await Promise.all([
      mesh0.startAgent('seed', CAP),
      mesh0.startAgent('fast', CAP),
      // This destination downloads slowly, so that it is still running when canceled.
      mesh0.startAgent('slow', [...CAP, '--max-download-rate', '1MiB'])
    ])
    const file = join(mesh0.volume('seed'), 'image.raw')
    await writeFile(file, randomBytes(SIZE))
    const digest = await sha256File(file)
    const d = await submit(mesh0, ['fast', 'slow'])
    await mesh0.until(async () => ((await mesh0.transfer(d.id)) as unknown as Distribution).destinations.find(x => x.agent === 'slow')?.bytesDone !== 0, 60_000, 'slow to start')
    const res = await mesh0.api('POST', `/v1/transfers/${d.id}/cancel?destination=${encodeURIComponent('agent://slow/vol/image.raw')}`)
    expect(res.status).toBe(200)
    expect((res.body as Distribution).destinations.find(x => x.agent === 'slow')?.state).toBe('canceled')
    const done = await mesh0.waitForState(d.id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
    expect(done.state).toBe('succeeded')
    expect(done.destinations.map(x => [x.agent, x.state])).toEqual([['fast', 'succeeded'], ['slow', 'canceled']])
    expect(await sha256File(join(mesh0.volume('fast'), 'image.raw'))).toBe(digest)
    await mesh0.until(async () => (await readdir(mesh0.volume('slow'))).length === 0, 20_000, 'the canceled partial to be removed')
  })

  it('carries on when the seed is killed and restarted mid-distribution', async () => {
    const dests = ['d1', 'd2']
    const s = await setup(dests)
    mesh = s.mesh
    const d = await submit(mesh, dests)
    await mesh.until(async () => ((await mesh!.transfer(d.id)) as unknown as Distribution).destinations.some(x => x.bytesDone > 0), 60_000, 'first pieces')
    await mesh.kill('seed')
    await mesh.restartAgent('seed')
    const done = await mesh.waitForState(d.id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
    expect(done.state).toBe('succeeded')
    for (const name of dests) expect(await sha256File(join(mesh.volume(name), 'image.raw'))).toBe(s.digest)
  })

  it('fails the distribution with source_changed when the source changes under the seed, and leaves nothing at the destinations', async () => {
    const dests = ['d1', 'd2']
    // A slow seed (16 MiB at 2 MiB/s), so that the source changes while most pieces are still to be read.
    const s = await setup(dests, {}, ['--max-upload-rate', '2MiB'])
    mesh = s.mesh
    const d = await submit(mesh, dests)
    await mesh.until(async () => ((await mesh!.api('GET', `/v1/transfers/${d.id}`)).body as Distribution).destinations.some(x => x.bytesDone > 0), 60_000, 'the first pieces')
    // Same size, other bytes, a new mtime: what the seed reads next no longer matches the manifest.
    await writeFile(join(mesh.volume('seed'), 'image.raw'), randomBytes(SIZE))
    const done = await mesh.waitForState(d.id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('source_changed')
    for (const dest of done.destinations) {
      expect(dest.state).toBe('failed')
      expect(dest.lastError?.code).toBe('source_changed')
    }
    // The destinations drop their partials when they leave: no file, whole or partial, is left behind.
    await mesh.until(async () => (await Promise.all(dests.map(async n => await readdir(mesh!.volume(n))))).every(files => files.length === 0), 30_000, 'the partials removed')
  })
})
