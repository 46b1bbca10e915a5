import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { partialName } from '../../protocols/index.ts'
import { TestMesh, sha256File } from '../helpers/mesh.ts'

interface Distribution {
  id: string
  state: string
  destinations: Array<{ agent: string, state: string, sha256?: string, lastError?: { code: string, message: string } }>
}

/**
 * A distribution's destination writes its pieces through the file plug-in,
 * with the same defences as a plain transfer: whoever can write in the
 * destination directory cannot redirect the pieces out of the volume by
 * planting a symlink under the partial file's predictable name.
 */
describe('distribution destinations: a symlink planted under the partial name', () => {
  let mesh: TestMesh
  let outside: string
  const victim = 'the host\'s file, outside every volume'

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator(['--piece-size', String(1024 * 1024)])
    outside = join(mesh.dir, 'outside')
    await mkdir(outside, { recursive: true })
    await writeFile(join(outside, 'victim.img'), victim)
    await mesh.startAgent('seed')
    await mesh.startAgent('d1')
    await mesh.startAgent('d2')
    await writeFile(join(mesh.volume('seed'), 'image.raw'), randomBytes(4 * 1024 * 1024 + 5))
  })
  afterAll(async () => { await mesh.stop() })

  it('fails that destination with permission_denied, writes nothing outside, and the others still finish', async () => {
    // d1 is away when the distribution starts, so the symlink is in place before it joins.
    await mesh.kill('d1')
    await mesh.waitForAgent('d1', false)
    const res = await mesh.api('POST', '/v1/transfers', { source: 'agent://seed/vol/image.raw', destinations: ['agent://d1/vol/image.raw', 'agent://d2/vol/image.raw'] })
    expect(res.status).toBe(201)
    const { id } = res.body as Distribution
    const planted = partialName('image.raw', id)
    await symlink(join(outside, 'victim.img'), join(mesh.volume('d1'), planted))
    await mesh.restartAgent('d1')

    const done = await mesh.waitForState(id, ['succeeded', 'failed', 'canceled'], 60_000) as unknown as Distribution
    const d1 = done.destinations.find(d => d.agent === 'd1')
    const d2 = done.destinations.find(d => d.agent === 'd2')
    expect(d1?.state).toBe('failed')
    expect(d1?.lastError?.code).toBe('permission_denied')
    expect(d1?.lastError?.message).toContain(planted)
    expect(d1?.lastError?.message).not.toContain(outside)
    expect(d2?.state).toBe('succeeded')
    expect(await sha256File(join(mesh.volume('d2'), 'image.raw'))).toBe(await sha256File(join(mesh.volume('seed'), 'image.raw')))
    expect(done.state).toBe('failed')

    expect(await readFile(join(outside, 'victim.img'), 'utf8')).toBe(victim)
    expect(await readdir(outside)).toEqual(['victim.img'])
    // Nothing was renamed onto the target; the planted link is left where it was, pointing where it did.
    expect(await readdir(mesh.volume('d1'))).toEqual([planted])
  })
})
