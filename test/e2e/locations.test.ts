import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdir, readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { TestMesh, sha256File } from '../helpers/mesh.ts'

const MiB = 1024 * 1024

/**
 * Where a file lands and what happens to what is there, through real
 * processes: `dir/` destinations, a directory in the way, a directory source
 * without its slash, and `overwrite`. Every refusal comes before a byte moves:
 * the source agent's bytesServed does not change.
 */
describe('locations: trailing slashes, directories in the way, overwrite', () => {
  let mesh: TestMesh
  let src: string
  let dst: string
  const served = async (): Promise<number> => (await mesh.status('store-1')).counters.bytesServed

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('compute-1')])
    src = mesh.volume('store-1')
    dst = mesh.volume('compute-1')
    await writeFile(join(src, 'disk.img'), randomBytes(2 * MiB))
    // An mtime in the past with milliseconds, so that a copy that kept "now" would show.
    await utimes(join(src, 'disk.img'), new Date(1_700_000_000_123), new Date(1_700_000_000_123))
    await mkdir(join(src, 'dataset'))
    await writeFile(join(src, 'dataset', 'a.txt'), 'a')
  })
  afterAll(async () => { await mesh?.stop() })

  async function run (source: string, destination: string, extra: Record<string, unknown> = {}): Promise<Awaited<ReturnType<TestMesh['transfer']>>> {
    const t = await mesh.submit(source, destination, extra)
    return await mesh.waitForState(t.id, ['succeeded', 'failed'])
  }

  it('a file sent to dir/ lands as dir/<its name>, with the source\'s mtime', async () => {
    const done = await run('agent://store-1/vol/disk.img', 'agent://compute-1/vol/incoming/')
    expect(done.state).toBe('succeeded')
    expect(await readdir(join(dst, 'incoming'))).toEqual(['disk.img'])
    expect(await sha256File(join(dst, 'incoming', 'disk.img'))).toBe(await sha256File(join(src, 'disk.img')))
    const ms = async (file: string): Promise<bigint> => (await stat(file, { bigint: true })).mtimeNs / 1_000_000n
    expect(await ms(join(dst, 'incoming', 'disk.img'))).toBe(await ms(join(src, 'disk.img')))
  })

  it('a file sent onto an existing directory fails at once with is_a_directory', async () => {
    await mkdir(join(dst, 'adir'))
    const before = await served()
    const done = await run('agent://store-1/vol/disk.img', 'agent://compute-1/vol/adir')
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('is_a_directory')
    expect(done.lastError?.message).toContain('agent://compute-1/vol/adir/')
    expect(await served()).toBe(before)
    expect(await readdir(join(dst, 'adir'))).toEqual([])
  })

  it('a directory source without its slash fails with invalid_argument naming the form to use', async () => {
    const done = await run('agent://store-1/vol/dataset', 'agent://compute-1/vol/dataset')
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('invalid_argument')
    expect(done.lastError?.message).toContain('add a trailing /')
    expect(done.lastError?.message).toContain('agent://store-1/vol/dataset/')
  })

  it('overwrite never: an existing destination fails with exists and is left as it was', async () => {
    await writeFile(join(dst, 'kept.img'), 'mine')
    const before = await served()
    const done = await run('agent://store-1/vol/disk.img', 'agent://compute-1/vol/kept.img', { overwrite: 'never' })
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('exists')
    expect(await readFile(join(dst, 'kept.img'), 'utf8')).toBe('mine')
    expect(await served()).toBe(before)
    // …and with nothing there, never copies.
    const fresh = await run('agent://store-1/vol/disk.img', 'agent://compute-1/vol/fresh.img', { overwrite: 'never' })
    expect(fresh.state).toBe('succeeded')
  })

  it('overwrite if-different: an unchanged destination is left (nothing read from the source), a changed source is copied', async () => {
    const target = join(dst, 'incoming', 'disk.img')
    const inode = (await stat(target)).ino
    const before = await served()
    const same = await run('agent://store-1/vol/disk.img', 'agent://compute-1/vol/incoming/', { overwrite: 'if-different' })
    expect(same.state).toBe('succeeded')
    expect(same.sha256).toBe(await sha256File(join(src, 'disk.img')))
    expect(same.progress.bytesDone).toBe(0)
    expect(await served()).toBe(before)
    expect((await stat(target)).ino).toBe(inode)

    await writeFile(join(src, 'disk.img'), randomBytes(MiB))
    const changed = await run('agent://store-1/vol/disk.img', 'agent://compute-1/vol/incoming/', { overwrite: 'if-different' })
    expect(changed.state).toBe('succeeded')
    expect(await sha256File(target)).toBe(await sha256File(join(src, 'disk.img')))
    expect(await served()).toBe(before + MiB)
  })

  it('overwrite is checked at submit', async () => {
    const res = await mesh.api('POST', '/v1/transfers', { source: 'agent://store-1/vol/disk.img', destination: 'agent://compute-1/vol/x', overwrite: 'sometimes' })
    expect(res.status).toBe(400)
  })
})
