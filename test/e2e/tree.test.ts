import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { chmod, lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { TestMesh, sha256File } from '../helpers/mesh.ts'

interface TreeTransfer { id: string, state: string, progress: { bytesDone: number, bytesTotal?: number, files?: { total: number, done: number, skipped: number, failed: number } }, lastError?: { code: string, message: string } }

const ODD = ['with space.txt', 'ünïcödé-ファイル.bin', 'new\nline.txt']

/** Every file under `dir` with its sha256, by path: what a copy must reproduce. */
async function contents (dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue
    const full = join(e.parentPath, e.name)
    out[full.slice(dir.length + 1)] = await sha256File(full)
  }
  return out
}

describe('directory trees, agent to agent (real processes)', () => {
  let mesh: TestMesh
  let src: string
  let dst: string
  const served = async (): Promise<number> => (await mesh.status('store-1')).counters.bytesServed

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('compute-1')])
    src = join(mesh.volume('store-1'), 'dataset')
    dst = mesh.volume('compute-1')
    await mkdir(join(src, 'a', 'b'), { recursive: true })
    await mkdir(join(src, 'empty'))
    await writeFile(join(src, 'top.bin'), randomBytes(300_000))
    await writeFile(join(src, 'a', 'one.txt'), 'one')
    await writeFile(join(src, 'a', 'b', 'two.bin'), randomBytes(2 * 1024 * 1024 + 5))
    await writeFile(join(src, 'a', 'scratch.tmp'), 'left out')
    await writeFile(join(src, 'zero.bin'), '')
    for (const name of ODD) await writeFile(join(src, name), name)
    await chmod(join(src, 'a', 'one.txt'), 0o640)
    await utimes(join(src, 'top.bin'), new Date(1_600_000_000_000), new Date(1_600_000_000_000))
    await symlink('top.bin', join(src, 'link-to-top'))
    execFileSync('mkfifo', [join(src, 'a', 'fifo')])
  })
  afterAll(async () => { await mesh?.stop() })

  async function run (destination: string, extra: Record<string, unknown> = {}): Promise<TreeTransfer> {
    const t = await mesh.submit('agent://store-1/vol/dataset/', destination, extra)
    return await mesh.waitForState(t.id, ['succeeded', 'failed']) as unknown as TreeTransfer
  }

  it('copies the tree: files, empty directories, modes and mtimes; a symlink and a FIFO are skipped; excluded files stay behind', async () => {
    const done = await run('agent://compute-1/vol/copy/', { exclude: ['*.tmp'] })
    expect(done.state).toBe('succeeded')
    const want = await contents(src)
    delete want['a/scratch.tmp']
    expect(await contents(join(dst, 'copy'))).toEqual(want)
    expect((await stat(join(dst, 'copy', 'empty'))).isDirectory()).toBe(true)
    expect((await stat(join(dst, 'copy', 'a', 'one.txt'))).mode & 0o777).toBe(0o640)
    expect(Math.floor((await stat(join(dst, 'copy', 'top.bin'))).mtimeMs)).toBe(1_600_000_000_000)
    await expect(stat(join(dst, 'copy', 'link-to-top'))).rejects.toThrow()
    await expect(stat(join(dst, 'copy', 'a', 'fifo'))).rejects.toThrow()
    // 7 regular files selected; the link and the FIFO listed and skipped.
    expect(done.progress.files).toEqual({ total: 9, done: 7, skipped: 2, failed: 0 })
    expect(done.progress.bytesDone).toBe(done.progress.bytesTotal)
    // No partial file anywhere in the copy.
    expect((await readdir(join(dst, 'copy'), { recursive: true })).filter(n => n.endsWith('.partial'))).toEqual([])
  })

  it('a re-run with nothing changed moves no byte (sync mtime, the default)', async () => {
    const before = await served()
    const again = await run('agent://compute-1/vol/copy/', { exclude: ['*.tmp'] })
    expect(again.state).toBe('succeeded')
    expect(again.progress.files).toEqual({ total: 9, done: 0, skipped: 9, failed: 0 })
    expect(await served()).toBe(before)
  })

  it('sync levels: size misses a same-size change that mtime and checksum catch; exists skips any file there', async () => {
    // Same size, new bytes, new mtime.
    await writeFile(join(src, 'a', 'one.txt'), 'ONE')
    const bySize = await run('agent://compute-1/vol/copy/', { exclude: ['*.tmp'], sync: 'size' })
    expect(bySize.progress.files?.done).toBe(0)
    expect(await readFile(join(dst, 'copy', 'a', 'one.txt'), 'utf8')).toBe('one')
    const byExists = await run('agent://compute-1/vol/copy/', { exclude: ['*.tmp'], sync: 'exists' })
    expect(byExists.progress.files?.done).toBe(0)
    const byChecksum = await run('agent://compute-1/vol/copy/', { exclude: ['*.tmp'], sync: 'checksum' })
    expect(byChecksum.progress.files?.done).toBe(1)
    expect(await readFile(join(dst, 'copy', 'a', 'one.txt'), 'utf8')).toBe('ONE')
    await writeFile(join(src, 'a', 'one.txt'), 'one')
    const byMtime = await run('agent://compute-1/vol/copy/', { exclude: ['*.tmp'] })
    expect(byMtime.progress.files?.done).toBe(1)
    const all = await run('agent://compute-1/vol/copy/', { exclude: ['*.tmp'], sync: 'none' })
    expect(all.progress.files).toEqual({ total: 9, done: 7, skipped: 2, failed: 0 })
  })

  it('lists its files by state, a page at a time; a file that cannot be placed fails the tree with its own error', async () => {
    await mkdir(join(dst, 'blocked', 'top.bin'), { recursive: true })
    const t = await mesh.submit('agent://store-1/vol/dataset/', 'agent://compute-1/vol/blocked/', { exclude: ['*.tmp'] })
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed']) as unknown as TreeTransfer
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('is_a_directory')
    expect(done.lastError?.message).toContain('top.bin')
    expect(done.progress.files).toEqual({ total: 9, done: 6, skipped: 2, failed: 1 })
    type Page = { items: Array<{ path: string, state: string, reason?: string, error?: { code: string } }>, next?: string }
    const failed = (await mesh.api('GET', `/v1/transfers/${t.id}/files?state=failed`)).body as Page
    expect(failed.items).toMatchObject([{ path: 'top.bin', state: 'failed', error: { code: 'is_a_directory' } }])
    const skipped = (await mesh.api('GET', `/v1/transfers/${t.id}/files?state=skipped`)).body as Page
    expect(skipped.items.map(f => [f.path, f.reason])).toEqual([['a/fifo', 'special file (socket, FIFO or device)'], ['link-to-top', 'symbolic link (not followed)']])
    // Every file once, in pages of 4, in path order.
    const paths: string[] = []
    let after: string | undefined
    for (let page = 0; page < 10; page++) {
      const res = (await mesh.api('GET', `/v1/transfers/${t.id}/files?limit=4${after !== undefined ? `&after=${encodeURIComponent(after)}` : ''}`)).body as Page
      paths.push(...res.items.map(f => f.path))
      if (res.next === undefined) break
      after = res.next
    }
    expect(paths).toHaveLength(9)
    expect(paths).toEqual([...paths].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))))
    expect(paths).toContain('new\nline.txt')
  })

  it('overwrite never keeps every file already at the destination, changed or not, and copies the missing ones', async () => {
    const first = await run('agent://compute-1/vol/kept/', { exclude: ['*.tmp'] })
    expect(first.state).toBe('succeeded')
    const kept = join(dst, 'kept')
    await writeFile(join(kept, 'a', 'one.txt'), 'changed at the destination, and longer')
    await rm(join(kept, 'top.bin'))
    const again = await run('agent://compute-1/vol/kept/', { exclude: ['*.tmp'], overwrite: 'never' })
    expect(again.state).toBe('succeeded')
    expect(await readFile(join(kept, 'a', 'one.txt'), 'utf8')).toBe('changed at the destination, and longer')
    expect(await sha256File(join(kept, 'top.bin'))).toBe(await sha256File(join(src, 'top.bin')))
    expect(again.progress.files).toEqual({ total: 9, done: 1, skipped: 8, failed: 0 })
    const rows = ((await mesh.api('GET', `/v1/transfers/${again.id}/files?state=skipped`)).body as { items: Array<{ path: string, reason?: string }> }).items
    expect(rows.find(r => r.path === 'a/one.txt')?.reason).toBe('exists at the destination (overwrite never)')
  })

  it('include selects files by glob, in every directory', async () => {
    const done = await run('agent://compute-1/vol/only-bin/', { include: ['*.bin'] })
    expect(done.state).toBe('succeeded')
    expect(Object.keys(await contents(join(dst, 'only-bin'))).sort()).toEqual(['a/b/two.bin', 'top.bin', 'zero.bin', 'ünïcödé-ファイル.bin'].sort())
  })

  it('links: copy makes the links whose target stays inside the tree, skips the others with the reason, and finds them in place next time', async () => {
    const links = join(mesh.volume('store-1'), 'links')
    await mkdir(join(links, 'sub'), { recursive: true })
    await writeFile(join(links, 'data.txt'), 'data')
    await symlink('data.txt', join(links, 'inside'))
    await symlink('../data.txt', join(links, 'sub', 'up-inside'))
    await symlink('gone.txt', join(links, 'dangling'))
    await symlink('../dataset/top.bin', join(links, 'outside'))
    await symlink('/etc/passwd', join(links, 'absolute'))
    const copy = async (extra: Record<string, unknown>): Promise<TreeTransfer> => {
      const t = await mesh.submit('agent://store-1/vol/links/', 'agent://compute-1/vol/links/', { links: 'copy', ...extra })
      return await mesh.waitForState(t.id, ['succeeded', 'failed']) as unknown as TreeTransfer
    }
    const rows = async (id: string): Promise<Array<{ path: string, state: string, reason?: string }>> =>
      ((await mesh.api('GET', `/v1/transfers/${id}/files`)).body as { items: Array<{ path: string, state: string, reason?: string }> }).items

    const dry = await copy({ dryRun: true })
    expect(dry.state).toBe('succeeded')
    expect((await rows(dry.id)).filter(r => r.state === 'would-copy').map(r => r.path)).toEqual(['dangling', 'data.txt', 'inside', 'sub/up-inside'])
    await expect(readdir(join(dst, 'links'))).rejects.toThrow()

    const done = await copy({})
    expect(done.state).toBe('succeeded')
    expect(done.progress.files).toEqual({ total: 6, done: 4, skipped: 2, failed: 0 })
    const out = join(dst, 'links')
    expect(await readlink(join(out, 'inside'))).toBe('data.txt')
    expect(await readlink(join(out, 'sub', 'up-inside'))).toBe('../data.txt')
    expect(await readlink(join(out, 'dangling'))).toBe('gone.txt')
    expect(await readFile(join(out, 'sub', 'up-inside'), 'utf8')).toBe('data')
    const skipped = (await rows(done.id)).filter(r => r.state === 'skipped')
    expect(skipped.map(r => [r.path, r.reason])).toEqual([
      ['absolute', expect.stringContaining('absolute path')],
      ['outside', expect.stringContaining('out of the tree')]
    ])
    await expect(lstat(join(out, 'outside'))).rejects.toThrow()
    await expect(lstat(join(out, 'absolute'))).rejects.toThrow()

    // Changed at the source: replaced (a file in its place too); the same link: skipped.
    await unlink(join(links, 'inside'))
    await symlink('sub', join(links, 'inside'))
    await writeFile(join(out, 'dangling.tmp'), 'x')
    await unlink(join(out, 'dangling'))
    await writeFile(join(out, 'dangling'), 'a file where the link was')
    const again = await copy({})
    expect(again.state).toBe('succeeded')
    expect(again.progress.files).toEqual({ total: 6, done: 2, skipped: 4, failed: 0 })
    expect(await readlink(join(out, 'inside'))).toBe('sub')
    expect(await readlink(join(out, 'dangling'))).toBe('gone.txt')
    expect((await rows(again.id)).find(r => r.path === 'sub/up-inside')).toMatchObject({ state: 'skipped', reason: 'unchanged (the same link)' })
    expect((await readdir(out, { recursive: true })).filter(n => n.endsWith('.partial'))).toEqual([])

    // Without links: copy, every link is skipped as before (the refusals at submit: api-submit-checks.test.ts).
    const skipAll = await mesh.submit('agent://store-1/vol/links/', 'agent://compute-1/vol/links-skipped/')
    expect((await mesh.waitForState(skipAll.id, ['succeeded', 'failed']) as unknown as TreeTransfer).progress.files).toEqual({ total: 6, done: 1, skipped: 5, failed: 0 })
  })

  it('is refused at submit when the destination is not a directory, or tree options come with a file', async () => {
    const noSlash = await mesh.api('POST', '/v1/transfers', { source: 'agent://store-1/vol/dataset/', destination: 'agent://compute-1/vol/copy' })
    expect(noSlash.status).toBe(400)
    expect(JSON.stringify(noSlash.body)).toContain('agent://compute-1/vol/copy/')
    const fileSync = await mesh.api('POST', '/v1/transfers', { source: 'agent://store-1/vol/dataset/top.bin', destination: 'agent://compute-1/vol/x', sync: 'mtime' })
    expect(fileSync.status).toBe(400)
  })
})
