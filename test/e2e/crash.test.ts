import { describe, it, expect, afterEach } from 'vitest'
import { writeFile, readdir, readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { partialOpenDirect, takesDirectIo } from '../helpers/fdinfo.ts'
import { TestMesh, sha256File } from '../helpers/mesh.ts'

const MiB = 1024 * 1024
const SIZE = 64 * MiB
// The source is slowed down so that the test can act while bytes are in flight.
const THROTTLE = ['--max-upload-rate', '24MiB', '--sync-every', '2MiB']

describe('crash and resume (SIGKILL mid-transfer)', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.stop(); mesh = undefined })

  async function setup (): Promise<{ mesh: TestMesh, digest: string }> {
    const m = await TestMesh.create()
    await m.startCoordinator()
    await Promise.all([m.startAgent('store-1', THROTTLE), m.startAgent('compute-1', ['--sync-every', '2MiB'])])
    const file = join(m.volume('store-1'), 'disk.img')
    await writeFile(file, randomBytes(SIZE))
    return { mesh: m, digest: await sha256File(file) }
  }

  it('resumes from the journaled offset after the destination agent is killed', async () => {
    const s = await setup()
    mesh = s.mesh
    const t = await mesh.submit('agent://store-1/vol/disk.img', 'agent://compute-1/vol/disk.img')
    // Kill once more than half of the file is durable on the destination.
    await mesh.until(async () => {
      const j = (await mesh!.status('compute-1')).journal.find(e => e.transferId === t.id)
      return (j?.durableOffset ?? 0) >= SIZE * 0.55
    }, 60_000, 'half the file journaled')
    // Killed while writing past the page cache (--direct-io auto on a file system that takes it, as /tmp's ext4 does).
    if (await takesDirectIo(mesh.volume('compute-1'))) expect(await partialOpenDirect(mesh.volume('compute-1'))).toBe(true)
    const kept = (await mesh.status('compute-1')).journal.find(e => e.transferId === t.id)!.durableOffset
    await mesh.kill('compute-1')
    // The target is not visible while the transfer is unfinished.
    expect(await readdir(mesh.volume('compute-1'))).not.toContain('disk.img')
    await mesh.restartAgent('compute-1')

    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(done.sha256).toBe(s.digest)
    expect(done.attempt).toBeGreaterThanOrEqual(2)
    expect(await sha256File(join(mesh.volume('compute-1'), 'disk.img'))).toBe(s.digest)
    expect(await readdir(mesh.volume('compute-1'))).toEqual(['disk.img'])
    // The restarted agent's own counter: it received only what was missing.
    const after = (await mesh.status('compute-1')).counters.bytesReceived
    expect(after).toBeLessThanOrEqual(SIZE - kept)
    expect(after).toBeLessThan(SIZE * 0.6)
  })

  it('loses no transfer when the coordinator is killed mid-transfer, and the running one completes', async () => {
    const s = await setup()
    mesh = s.mesh
    const running = await mesh.submit('agent://store-1/vol/disk.img', 'agent://compute-1/vol/disk.img')
    await mesh.until(async () => (await mesh!.transfer(running.id)).progress.bytesDone > 4 * MiB, 60_000, 'progress')
    const queuedBehind = await mesh.submit('agent://store-1/vol/disk.img', 'agent://compute-1/vol/second.img')
    await mesh.kill('coordinator')
    await mesh.startCoordinator()

    const first = await mesh.waitForState(running.id, ['succeeded', 'failed'])
    expect(first.state).toBe('succeeded')
    expect(first.sha256).toBe(s.digest)
    const second = await mesh.waitForState(queuedBehind.id, ['succeeded', 'failed'])
    expect(second.state).toBe('succeeded')
    expect(await sha256File(join(mesh.volume('compute-1'), 'disk.img'))).toBe(s.digest)
    expect(await sha256File(join(mesh.volume('compute-1'), 'second.img'))).toBe(s.digest)
    const list = (await mesh.api('GET', '/v1/transfers')).body as { items: Array<{ id: string }> }
    expect(list.items.map(i => i.id).sort()).toEqual([running.id, queuedBehind.id].sort())
  })

  it('cancels an active transfer: the partial is removed and the target is untouched', async () => {
    const s = await setup()
    mesh = s.mesh
    await writeFile(join(mesh.volume('compute-1'), 'disk.img'), 'previous version')
    const t = await mesh.submit('agent://store-1/vol/disk.img', 'agent://compute-1/vol/disk.img')
    await mesh.until(async () => (await mesh!.transfer(t.id)).progress.bytesDone > 4 * MiB, 60_000, 'progress')
    const res = await mesh.api('POST', `/v1/transfers/${t.id}/cancel`)
    expect(res.status).toBe(200)
    expect((res.body as { state: string }).state).toBe('canceled')
    await mesh.until(async () => (await mesh!.status('compute-1')).active.length === 0, 20_000, 'executor to stop')
    await mesh.until(async () => (await readdir(mesh!.volume('compute-1'))).length === 1, 20_000, 'partial removed')
    expect(await readdir(mesh.volume('compute-1'))).toEqual(['disk.img'])
    expect(await readFile(join(mesh.volume('compute-1'), 'disk.img'), 'utf8')).toBe('previous version')
    expect((await mesh.transfer(t.id)).state).toBe('canceled')
  })
})
