import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { TestMesh } from '../helpers/mesh.ts'

interface TreeTransfer { id: string, state: string, progress: { bytesDone: number, files?: { total: number, done: number, skipped: number, failed: number } }, lastError?: { code: string } }
interface FileRow { path: string, state: string, reason?: string }

/** Every entry under `dir` (links not followed), sorted: what must not change in a dry run. */
async function entries (dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).sort()
}

describe('a tree mirrored with deleteExtra, and its dry run (real processes)', () => {
  let mesh: TestMesh
  let src: string
  let dst: string
  let outside: string

  async function files (id: string): Promise<FileRow[]> {
    return ((await mesh.api('GET', `/v1/transfers/${id}/files?limit=1000`)).body as { items: FileRow[] }).items
  }

  async function run (destination: string, extra: Record<string, unknown>): Promise<TreeTransfer> {
    const t = await mesh.submit('agent://store-1/vol/dataset/', destination, extra)
    return await mesh.waitForState(t.id, ['succeeded', 'failed']) as unknown as TreeTransfer
  }

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('compute-1')])
    src = join(mesh.volume('store-1'), 'dataset')
    await mkdir(join(src, 'sub'), { recursive: true })
    await writeFile(join(src, 'a.txt'), 'new a')
    await writeFile(join(src, 'sub', 'b.txt'), 'b')
    await writeFile(join(src, 'keep.tmp'), 'source scratch')
    // Outside the destination agent's volume: a link to it is removed as a link, and what it points to stays.
    outside = join(mesh.dir, 'outside')
    await mkdir(join(outside, 'dir'), { recursive: true })
    await writeFile(join(outside, 'precious.txt'), 'precious')
    await writeFile(join(outside, 'dir', 'inner.txt'), 'inner')
    dst = join(mesh.volume('compute-1'), 'mirror')
    await mkdir(join(dst, 'old', 'deeper'), { recursive: true })
    await mkdir(join(dst, 'sub'), { recursive: true })
    await writeFile(join(dst, 'a.txt'), 'old')
    await writeFile(join(dst, 'extra.txt'), 'extra')
    await writeFile(join(dst, 'sub', 'gone.txt'), 'gone')
    await writeFile(join(dst, 'old', 'x.txt'), 'x')
    await writeFile(join(dst, 'old', 'deeper', 'y.txt'), 'y')
    await writeFile(join(dst, 'local.tmp'), 'excluded: not the mirror\'s to remove')
    await symlink(join(outside, 'precious.txt'), join(dst, 'link-out'))
    await symlink(join(outside, 'dir'), join(dst, 'dirlink'))
  })
  afterAll(async () => { await mesh?.stop() })

  const EXTRAS = ['dirlink', 'extra.txt', 'link-out', 'old', 'old/deeper', 'old/deeper/y.txt', 'old/x.txt', 'sub/gone.txt']

  it('a dry run lists what would be copied and deleted, and changes nothing', async () => {
    const before = await entries(dst)
    const done = await run('agent://compute-1/vol/mirror/', { exclude: ['*.tmp'], deleteExtra: true, dryRun: true })
    expect(done.state).toBe('succeeded')
    expect(done.progress.bytesDone).toBe(0)
    // The plan in the record's counts too, not only in the file rows.
    expect(done.progress.files).toMatchObject({ done: 0, wouldCopy: 2, wouldDelete: EXTRAS.length })
    expect(done.progress.files).not.toHaveProperty('deleted')
    expect(await entries(dst)).toEqual(before)
    expect(await readFile(join(dst, 'a.txt'), 'utf8')).toBe('old')
    const rows = await files(done.id)
    expect(rows.filter(r => r.state === 'would-copy').map(r => r.path)).toEqual(['a.txt', 'sub/b.txt'])
    expect(rows.filter(r => r.state === 'would-delete').map(r => r.path)).toEqual(EXTRAS)
    expect(rows.map(r => r.path)).not.toContain('local.tmp')
    const filtered = (await mesh.api('GET', `/v1/transfers/${done.id}/files?state=would-delete`)).body as { items: FileRow[] }
    expect(filtered.items).toHaveLength(EXTRAS.length)
  })

  it('a dry run into a directory that does not exist yet creates nothing', async () => {
    const done = await run('agent://compute-1/vol/not-yet/', { deleteExtra: true, dryRun: true })
    expect(done.state).toBe('succeeded')
    expect((await files(done.id)).map(r => [r.path, r.state])).toEqual([['a.txt', 'would-copy'], ['keep.tmp', 'would-copy'], ['sub/b.txt', 'would-copy']])
    expect(await readdir(mesh.volume('compute-1'))).not.toContain('not-yet')
  })

  it('the mirror copies, then removes the extras (links as links), leaving excluded paths and link targets alone', async () => {
    const done = await run('agent://compute-1/vol/mirror/', { exclude: ['*.tmp'], deleteExtra: true })
    expect(done.state).toBe('succeeded')
    expect(await entries(dst)).toEqual(['a.txt', 'local.tmp', 'sub', 'sub/b.txt'])
    expect(await readFile(join(dst, 'a.txt'), 'utf8')).toBe('new a')
    expect(await readFile(join(outside, 'precious.txt'), 'utf8')).toBe('precious')
    expect(await readFile(join(outside, 'dir', 'inner.txt'), 'utf8')).toBe('inner')
    const rows = await files(done.id)
    expect(rows.filter(r => r.state === 'deleted').map(r => r.path)).toEqual(EXTRAS)
    expect(rows.filter(r => r.state === 'done').map(r => r.path)).toEqual(['a.txt', 'sub/b.txt'])
    expect(done.progress.files).toMatchObject({ done: 2, deleted: EXTRAS.length })
    expect(done.progress.files).not.toHaveProperty('wouldCopy')
  })

  it('an extra directory holding excluded entries is kept; nothing is removed when a file failed', async () => {
    await mkdir(join(dst, 'cache'), { recursive: true })
    await writeFile(join(dst, 'cache', 'c.tmp'), 'excluded')
    const kept = await run('agent://compute-1/vol/mirror/', { exclude: ['*.tmp'], deleteExtra: true })
    expect(kept.state).toBe('succeeded')
    expect(await readFile(join(dst, 'cache', 'c.tmp'), 'utf8')).toBe('excluded')
    expect((await files(kept.id)).find(r => r.path === 'cache')).toMatchObject({ state: 'skipped', reason: expect.stringContaining('excluded') })

    const blocked = join(mesh.volume('compute-1'), 'blocked')
    await mkdir(join(blocked, 'a.txt'), { recursive: true })
    await writeFile(join(blocked, 'extra.txt'), 'stays')
    const failed = await run('agent://compute-1/vol/blocked/', { exclude: ['*.tmp'], deleteExtra: true })
    expect(failed.state).toBe('failed')
    expect(failed.lastError?.code).toBe('is_a_directory')
    expect(await readFile(join(blocked, 'extra.txt'), 'utf8')).toBe('stays')
  })
  it('copies (and mirrors) a tree inside one agent; a destination inside the source, or the reverse, is refused at submit', async () => {
    await utimes(join(src, 'sub', 'b.txt'), new Date(1_600_000_000_000), new Date(1_600_000_000_000))
    const local = join(mesh.volume('store-1'), 'local-copy')
    await mkdir(local, { recursive: true })
    await writeFile(join(local, 'extra.txt'), 'extra')
    const t = await mesh.submit('agent://store-1/vol/dataset/', 'agent://store-1/vol/local-copy/', { deleteExtra: true })
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed']) as unknown as TreeTransfer
    expect(done.state).toBe('succeeded')
    expect(await entries(local)).toEqual(['a.txt', 'keep.tmp', 'sub', 'sub/b.txt'])
    expect(await readFile(join(local, 'a.txt'), 'utf8')).toBe('new a')
    expect(Math.floor((await stat(join(local, 'sub', 'b.txt'))).mtimeMs)).toBe(1_600_000_000_000)
    expect((await files(done.id)).filter(r => r.state === 'deleted').map(r => r.path)).toEqual(['extra.txt'])
    for (const [from, to] of [['dataset/', 'dataset/inner/'], ['dataset/sub/', 'dataset/'], ['dataset/', '']]) {
      const res = await mesh.api('POST', '/v1/transfers', { source: `agent://store-1/vol/${from}`, destination: `agent://store-1/vol/${to}`, deleteExtra: true })
      expect(res.status).toBe(400)
      expect(JSON.stringify(res.body)).toContain('one holds the other')
    }
  })
  it('sync checksum asks the holder for the digests of many files in one request, not one each', async () => {
    const requests = async (): Promise<number> => (await mesh.status('store-1')).counters.dataRequests
    const before = await requests()
    const done = await run('agent://compute-1/vol/mirror/', { exclude: ['*.tmp'], sync: 'checksum' })
    expect(done.state).toBe('succeeded')
    expect(done.progress.files).toEqual({ total: 2, done: 0, skipped: 2, failed: 0 })
    // The listing, and one request for both digests.
    expect(await requests() - before).toBe(2)
  })
})
