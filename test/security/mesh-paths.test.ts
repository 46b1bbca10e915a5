import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestMesh, sha256File } from '../helpers/mesh.ts'

/**
 * Paths through the whole system: submitted to the API, scheduled, run by
 * real agents. Nothing may be read or written outside a volume, whatever the
 * location says and whatever symlinks the volume holds.
 */
describe('volumes end to end: confinement, symlinks, read-only', () => {
  let mesh: TestMesh
  let outside: string

  async function listing (dir: string): Promise<string[]> {
    return (await readdir(dir, { recursive: true })).sort()
  }

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    outside = join(mesh.dir, 'outside')
    await mkdir(outside, { recursive: true })
    await writeFile(join(outside, 'secret.img'), 'the host\'s secret')
    const ro = join(mesh.dir, 'volumes', 'a-ro')
    await mkdir(ro, { recursive: true })
    await writeFile(join(ro, 'r.img'), randomBytes(64 * 1024))
    await Promise.all([mesh.startAgent('a', ['--volume', `ro=${ro}:ro`]), mesh.startAgent('b')])
    await writeFile(join(mesh.volume('a'), 'a.img'), randomBytes(128 * 1024))
    await symlink(join(outside, 'secret.img'), join(mesh.volume('a'), 'link.img'))
    await symlink(outside, join(mesh.volume('b'), 'out'))
  })
  afterAll(async () => { await mesh.stop() })

  it('copies inside volumes (the control for the attacks below)', async () => {
    const t = await mesh.submit('agent://a/vol/a.img', 'agent://b/vol/good.img')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(await sha256File(join(mesh.volume('b'), 'good.img'))).toBe(await sha256File(join(mesh.volume('a'), 'a.img')))
    // A read-only volume is still read.
    const r = await mesh.submit('agent://a/ro/r.img', 'agent://b/vol/r.img')
    expect((await mesh.waitForState(r.id, ['succeeded', 'failed'])).state).toBe('succeeded')
  })

  it('refuses traversal at submission with a clear 400', async () => {
    const cases: Array<[string, string, string]> = [
      ['agent://a/vol/../../etc/passwd', 'agent://b/vol/passwd', "source: '..' path segments are not allowed"],
      ['agent://a/vol/%2e%2e%2f%2e%2e%2fetc%2fpasswd', 'agent://b/vol/passwd', "source: an encoded '/' or a backslash inside a path segment is not allowed"],
      ['agent://a/vol/%2e%2e/%2e%2e/etc/passwd', 'agent://b/vol/passwd', "source: '..' path segments are not allowed"],
      ['agent://a/vol/a.img%00.txt', 'agent://b/vol/x', 'source: NUL bytes are not allowed in paths'],
      ['agent://a/vol/a.img', 'agent://b/vol/../../../outside/evil.img', "destination: '..' path segments are not allowed"],
      ['agent://a/vol/a.img', 'agent://b/vol/%2e%2e%2f%2e%2e%2fevil.img', "destination: an encoded '/' or a backslash inside a path segment is not allowed"]
    ]
    for (const [source, destination, message] of cases) {
      const res = await mesh.api('POST', '/v1/transfers', { source, destination })
      expect(res.status, `${source} → ${destination}`).toBe(400)
      expect((res.body as { message: string }).message).toContain(message)
    }
    expect(await listing(outside)).toEqual(['secret.img'])
  })

  it('fails a transfer whose source is a symlink out of the volume, and reads nothing', async () => {
    const before = (await mesh.status('a')).counters
    const t = await mesh.submit('agent://a/vol/link.img', 'agent://b/vol/stolen.img')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('permission_denied')
    expect(done.lastError?.message).toContain('outside its volume')
    expect(done.lastError?.message).not.toContain(outside)
    const after = (await mesh.status('a')).counters
    expect(after.bytesServed).toBe(before.bytesServed)
    expect(after.dataRefused).toBeGreaterThan(before.dataRefused)
    expect((await listing(mesh.volume('b'))).filter(f => f.includes('stolen'))).toEqual([])
  })

  it('fails a transfer whose destination goes through a symlink out of the volume, and writes nothing there', async () => {
    const t = await mesh.submit('agent://a/vol/a.img', 'agent://b/vol/out/evil.img')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('permission_denied')
    expect(await listing(outside)).toEqual(['secret.img'])
    expect(await readFile(join(outside, 'secret.img'), 'utf8')).toBe('the host\'s secret')
  })

  it('refuses a destination in a read-only volume', async () => {
    const res = await mesh.api('POST', '/v1/transfers', { source: 'agent://b/vol/good.img', destination: 'agent://a/ro/new.img' })
    expect(res.status).toBe(403)
    expect(res.body).toEqual({ code: 'permission_denied', message: 'destination: volume ro of agent a is read-only' })
    expect(await listing(join(mesh.dir, 'volumes', 'a-ro'))).toEqual(['r.img'])
  })
})
