import { describe, it, expect, afterEach } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { TestMesh, sha256File } from '../helpers/mesh.ts'
import { TcpProxy, tcpPort } from '../helpers/tcp-proxy.ts'

const MiB = 1024 * 1024
const SIZE = 24 * MiB
// Slow enough that the test acts while bytes are in flight (about 4 s for the whole file).
const RATE = '6MiB'

/**
 * The destination agent reaches the coordinator only through a relay the test
 * can cut: its control connection goes while its data connection to the
 * source, which does not pass through the relay, keeps working.
 */
describe('outcomes that finish while the control connection is down are not redone', () => {
  let mesh: TestMesh | undefined
  let proxy: TcpProxy | undefined
  afterEach(async () => {
    await proxy?.close()
    await mesh?.stop()
    proxy = undefined
    mesh = undefined
  })

  async function setup (rate = RATE): Promise<{ mesh: TestMesh, proxy: TcpProxy, digest: string, id: string }> {
    const m = await TestMesh.create()
    mesh = m
    await m.startCoordinator()
    const p = await TcpProxy.start(tcpPort(m.ready.multiaddrs[0]))
    proxy = p
    await m.startAgent('store-1', ['--max-upload-rate', rate])
    await m.startAgent('compute-1', [], {}, { coordinator: p.address(m.ready.multiaddrs[0]) })
    const file = join(m.volume('store-1'), 'disk.img')
    await writeFile(file, randomBytes(SIZE))
    const t = await m.submit('agent://store-1/vol/disk.img', 'agent://compute-1/vol/disk.img')
    await m.until(async () => (await m.transfer(t.id)).progress.bytesDone > 0, 30_000, 'bytes moving')
    return { mesh: m, proxy: p, digest: await sha256File(file), id: t.id }
  }

  async function journaled (m: TestMesh, id: string): Promise<void> {
    await m.until(async () => (await m.status('compute-1')).journal.find(e => e.transferId === id)?.outcome?.outcome === 'succeeded', 60_000, 'the outcome journaled on the agent')
  }

  async function expectDoneOnce (m: TestMesh, id: string, digest: string): Promise<void> {
    const done = await m.waitForState(id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(done.attempt).toBe(1)
    expect(done.sha256).toBe(digest)
    expect(await sha256File(join(m.volume('compute-1'), 'disk.img'))).toBe(digest)
    // The source sent the object once: no second attempt read it again.
    expect((await m.status('store-1')).counters.bytesServed).toBe(SIZE)
    await m.until(async () => (await m.status('compute-1')).journal.length === 0, 20_000, 'the journal entry acknowledged')
  }

  it('the control connection is cut, the transfer is requeued, the agent finishes meanwhile: on reconnect it succeeds with its first attempt', async () => {
    const s = await setup()
    s.proxy.cut()
    await s.mesh.waitForAgent('compute-1', false)
    const requeued = await s.mesh.waitForState(s.id, ['queued'], 20_000)
    expect(requeued.attempt).toBe(1)
    await journaled(s.mesh, s.id)
    s.proxy.open()
    await expectDoneOnce(s.mesh, s.id, s.digest)
  })

  it('the agent reconnects while it still runs the transfer: the requeued record goes back to active, with no new attempt', async () => {
    // Slower (12 s for the file), so that the copy is still running when the agent is back, even on a busy machine.
    const s = await setup('2MiB')
    s.proxy.cut()
    await s.mesh.waitForState(s.id, ['queued'], 20_000)
    s.proxy.open()
    await s.mesh.waitForAgent('compute-1', true)
    // Back while the copy runs: the record is active again with the same attempt, not queued for another.
    expect((await s.mesh.status('compute-1')).active).toContain(s.id)
    expect(await s.mesh.transfer(s.id)).toMatchObject({ state: 'active', attempt: 1 })
    await expectDoneOnce(s.mesh, s.id, s.digest)
  })

  it('the coordinator is killed and restarted while the transfer completes, and the agent returns only after the grace period', async () => {
    const s = await setup()
    s.proxy.cut()
    await s.mesh.kill('coordinator')
    await journaled(s.mesh, s.id)
    await s.mesh.startCoordinator()
    // The grace period (the heartbeat timeout, 3 s here) passes with the agent away: the record goes back to the queue.
    const requeued = await s.mesh.waitForState(s.id, ['queued'], 30_000)
    expect(requeued.attempt).toBe(1)
    s.proxy.open()
    await expectDoneOnce(s.mesh, s.id, s.digest)
  })
})
