import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { join } from 'node:path'
import { TestMesh, sha256File } from '../helpers/mesh.ts'
import { randomDigest } from '../../protocols/index.ts'

const MiB = 1024 * 1024

describe('a plug-in source read via one agent and written by another', () => {
  let mesh: TestMesh

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('edge-1'), mesh.startAgent('store-1')])
  })
  afterAll(async () => { await mesh?.stop() })

  it('edge-1 reads random:// and streams it to store-1, which writes it to its volume', async () => {
    const size = 8 * MiB
    const served = (await mesh.status('edge-1')).counters.bytesServed
    const t = await mesh.submit(`random://?size=${size}&seed=via-test&via=edge-1`, 'agent://store-1/vol/from-edge.bin')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    const digest = await randomDigest(size, 'via-test')
    expect(done.sha256).toBe(digest)
    expect(await sha256File(join(mesh.volume('store-1'), 'from-edge.bin'))).toBe(digest)
    // The bytes crossed the mesh: edge-1 served them.
    expect((await mesh.status('edge-1')).counters.bytesServed - served).toBe(size)
  })

  it('random:// via edge-1 to null:// via store-1 moves the bytes between the two agents', async () => {
    const size = 4 * MiB
    const before = await mesh.status('store-1')
    const t = await mesh.submit(`random://?size=${size}&seed=7&via=edge-1`, 'null://?via=store-1')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(done.sha256).toBe(await randomDigest(size, '7'))
    expect((await mesh.status('store-1')).counters.bytesReceived - before.counters.bytesReceived).toBe(size)
  })
})
