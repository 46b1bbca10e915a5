import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { realpathSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { IsADirectoryError, NotFoundError, PermissionDeniedError, SourceChangedError } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import type { ProtocolPlugin, StatResult } from '../../protocols/index.ts'
import { syncFileSystems, syncfsCount } from '../../protocols/syncfs.ts'
import { threadAnswers } from '../../protocols/group-thread.ts'
import { renamePartials, writePartials } from '../../protocols/group-io.ts'

/** The file plug-in's calls for many small files at once (a tree's fast path): the rules of stat, read and write, one call for many. */
describe('file plug-in: statMany, readFiles, putFiles', () => {
  let root: string
  let outside: string
  let plugin: ProtocolPlugin
  const u = (p: string): URL => new URL(`file:///vol/${p}`)
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-file-group-'))
    outside = await mkdtemp(join(tmpdir(), 'staccato-file-group-out-'))
    plugin = file({ volumes: [{ name: 'vol', root, readOnly: false }] })
  })
  afterEach(async () => {
    await rm(root, { recursive: true, force: true })
    await rm(outside, { recursive: true, force: true })
  })

  it('putFiles writes each file with its mode and mtime, creates the parents, and leaves no partial', async () => {
    const mtime = 1_700_000_000_123
    const files = Array.from({ length: 150 }, (_, i) => ({ url: u(`d${i % 3}/f${i}.bin`), data: Buffer.from(`file ${i}`), mtime, mode: 0o640 }))
    const errors = await plugin.putFiles!(files, { key: 'tr1' })
    expect(errors.every(e => e === undefined)).toBe(true)
    // Created, written and renamed in the group thread (two requests a call), not inline on the event loop.
    expect(threadAnswers()).toBeGreaterThanOrEqual(2)
    for (const [i, f] of files.entries()) {
      expect(await readFile(join(root, `d${i % 3}`, `f${i}.bin`), 'utf8')).toBe(`file ${i}`)
      const st = await stat(join(root, `d${i % 3}`, `f${i}.bin`))
      expect(st.mode & 0o777).toBe(0o640)
      expect((await plugin.stat(f.url)).mtime).toBe(mtime)
    }
    for (const d of ['d0', 'd1', 'd2']) expect((await readdir(join(root, d))).filter(n => n.endsWith('.partial'))).toEqual([])
  })

  it('statMany and putFiles read each URL as stat and write do, whether its directory is shared with the file before it or not', async () => {
    await mkdir(join(root, 'sp ace', 'ü'), { recursive: true })
    await writeFile(join(root, 'sp ace', 'ü', 'a b.txt'), 'x')
    await writeFile(join(root, 'top.txt'), 'y')
    // Odd names and refused ones, in runs of one directory and alone: each gets the answer stat gives it alone.
    const hrefs = [
      'file:///vol/sp%20ace/%C3%BC/a%20b.txt', 'file:///vol/sp%20ace/%C3%BC/missing', 'file:///vol/sp%20ace/%C3%BC/..%2Fx',
      'file:///vol/sp%20ace/%C3%BC/a%2Fb', 'file:///vol/sp%20ace/%E0%A4/a', 'file:///vol/sp%20ace/%E0%A4/b', 'file:///vol/top.txt',
      'file:///vol//sp%20ace//%C3%BC//a%20b.txt', 'file:///vol/', 'file:///vol', 'file:///other/x', 'file://host/vol/top.txt', 'file:///vol/sp%20ace/%C3%BC/a%20b.txt?q=1'
    ]
    const urls = hrefs.map(h => new URL(h))
    const alone = await Promise.all(urls.map(async url => await plugin.stat(url).then(st => st.size, (err: { code?: string }) => err.code)))
    const many = (await plugin.statMany!(urls)).map(r => r instanceof Error ? (r as { code?: string }).code : r.size)
    expect(many).toEqual(alone)
    expect(alone[0]).toBe(1)
    // A write: the same names land where a write puts them, the refused ones fail alone with the write's code.
    const names = ['file:///vol/w%20d/%C3%BC.bin', 'file:///vol/w%20d/..%2Fout.bin', 'file:///vol/w%20d/n%0Aline.bin', 'file:///vol/w%E0%A4/x.bin', 'file:///vol/w%20d/last.bin']
    const errors = await plugin.putFiles!(names.map(h => ({ url: new URL(h), data: Buffer.from(h) })), { key: 'trp' })
    expect(errors.map(e => e?.code)).toEqual([undefined, 'permission_denied', undefined, 'invalid_argument', undefined])
    expect(await readFile(join(root, 'w d', 'ü.bin'), 'utf8')).toBe(names[0])
    expect(await readFile(join(root, 'w d', 'n\nline.bin'), 'utf8')).toBe(names[2])
    expect(await readFile(join(root, 'w d', 'last.bin'), 'utf8')).toBe(names[4])
  })

  it('putFiles with deferRenameSync syncs once (the data), and a next call with no files syncs the directories it is given', async () => {
    const before = syncfsCount()
    const errors = await plugin.putFiles!([{ url: u('g/a.bin'), data: Buffer.from('a') }, { url: u('h/b.bin'), data: Buffer.from('b') }], { key: 'trd', deferRenameSync: true })
    expect(errors).toEqual([undefined, undefined])
    // At their names already; one sync for both directories (one file system), none yet for the renames.
    expect(await readFile(join(root, 'g', 'a.bin'), 'utf8')).toBe('a')
    expect(syncfsCount() - before).toBe(1)
    expect(await plugin.putFiles!([], { key: 'trd', syncDirectories: [u('g/'), u('h/')] })).toEqual([])
    expect(syncfsCount() - before).toBe(2)
  })

  it('putFiles calls beforeSync once, with the partials written and no file at its name, and syncs the directories it returns in the same sync', async () => {
    const before = syncfsCount()
    let calls = 0
    let release = (_: URL[]): void => {}
    const gate = new Promise<URL[]>(resolve => { release = resolve })
    let called = (): void => {}
    const reached = new Promise<void>(resolve => { called = resolve })
    const put = plugin.putFiles!([{ url: u('bs/a.bin'), data: Buffer.from('a') }], {
      key: 'trb',
      deferRenameSync: true,
      beforeSync: async () => { calls++; called(); return await gate }
    })
    await reached
    // Its partial is written; its name waits for beforeSync (and the sync after it).
    expect((await readdir(join(root, 'bs'))).filter(n => n.endsWith('.partial'))).toHaveLength(1)
    await expect(readFile(join(root, 'bs', 'a.bin'))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(syncfsCount() - before).toBe(0)
    release([u('bs/')])
    expect(await put).toEqual([undefined])
    expect(calls).toBe(1)
    expect(await readFile(join(root, 'bs', 'a.bin'), 'utf8')).toBe('a')
    expect(syncfsCount() - before).toBe(1)
  })

  it('putFiles: a file onto a directory, or through a link planted at its partial name, fails alone and the others land', async () => {
    await mkdir(join(root, 't', 'taken'), { recursive: true })
    await writeFile(join(outside, 'victim'), 'untouched')
    await symlink(join(outside, 'victim'), join(root, 't', '.planted.bin.tr2.partial'))
    const errors = await plugin.putFiles!([
      { url: u('t/ok1.bin'), data: Buffer.from('one') },
      { url: u('t/taken'), data: Buffer.from('x') },
      { url: u('t/planted.bin'), data: Buffer.from('evil') },
      { url: u('t/ok2.bin'), data: Buffer.from('two') }
    ], { key: 'tr2' })
    expect(errors[0]).toBeUndefined()
    expect(errors[1]).toBeInstanceOf(IsADirectoryError)
    expect(errors[2]).toBeInstanceOf(PermissionDeniedError)
    expect(errors[3]).toBeUndefined()
    expect(await readFile(join(root, 't', 'ok1.bin'), 'utf8')).toBe('one')
    expect(await readFile(join(root, 't', 'ok2.bin'), 'utf8')).toBe('two')
    expect(await readFile(join(outside, 'victim'), 'utf8')).toBe('untouched')
    expect((await readdir(join(root, 't'))).sort()).toEqual(['.planted.bin.tr2.partial', 'ok1.bin', 'ok2.bin', 'taken'])
  })

  it('putFiles cuts what a partial left by an earlier attempt holds beyond the new bytes (a fresh partial is not truncated)', async () => {
    await mkdir(join(root, 'r'), { recursive: true })
    await writeFile(join(root, 'r', '.left.bin.tr4.partial'), 'a longer leftover from an attempt that died')
    await chmod(join(root, 'r', '.left.bin.tr4.partial'), 0o600)
    const mode = 0o666 & ~process.umask()
    const errors = await plugin.putFiles!([{ url: u('r/left.bin'), data: Buffer.from('short'), mode }, { url: u('r/fresh.bin'), data: Buffer.from('new'), mode }], { key: 'tr4' })
    expect(errors).toEqual([undefined, undefined])
    expect(await readFile(join(root, 'r', 'left.bin'), 'utf8')).toBe('short')
    expect(await readFile(join(root, 'r', 'fresh.bin'), 'utf8')).toBe('new')
    // The mode a fresh partial is created with is not set again; the leftover's own mode is.
    expect((await stat(join(root, 'r', 'left.bin'))).mode & 0o7777).toBe(mode)
    expect((await stat(join(root, 'r', 'fresh.bin'))).mode & 0o7777).toBe(mode)
    expect((await readdir(join(root, 'r'))).sort()).toEqual(['fresh.bin', 'left.bin'])
  })

  it('putFiles refuses a parent that leaves the volume through a link', async () => {
    await symlink(outside, join(root, 'escape'))
    const errors = await plugin.putFiles!([{ url: u('escape/f.bin'), data: Buffer.from('x') }], { key: 'tr3' })
    expect(errors[0]).toBeInstanceOf(PermissionDeniedError)
    expect(await readdir(outside)).toEqual([])
  })

  it('the group\'s writes create nothing outside the volume when a directory became a link after it was resolved', async () => {
    // The paths putFiles resolved, handed to the writes after a link was swapped in: above the directory, and for the directory itself.
    const real = realpathSync(root)
    await mkdir(join(outside, 'sub'))
    await symlink(outside, join(root, 'above'))
    await symlink(join(outside, 'sub'), join(root, 'itself'))
    await mkdir(join(root, 'fine'))
    const written = writePartials([
      { partial: join(real, 'above', 'sub', '.a.bin.k.partial'), root: real, what: 'vol/above/sub/a.bin', offset: 0, length: 4 },
      { partial: join(real, 'itself', '.b.bin.k.partial'), root: real, what: 'vol/itself/b.bin', offset: 0, length: 4 },
      { partial: join(real, 'fine', '.c.bin.k.partial'), root: real, what: 'vol/fine/c.bin', offset: 0, length: 4 }
    ], Buffer.from('evil'))
    expect(written.map(w => 'error' in w ? ('denied' in w.error ? 'denied' : 'errno') : 'written')).toEqual(['denied', 'denied', 'written'])
    // Not even an empty file: the directory is checked before the creates, not each file after its own.
    expect(await readdir(join(outside, 'sub'))).toEqual([])
    const fine = written[2]
    if ('error' in fine) throw new Error('not written')
    expect(renamePartials([{ ...fine, dir: join(real, 'fine'), partial: join(real, 'fine', '.c.bin.k.partial'), target: join(real, 'fine', 'c.bin'), what: 'vol/fine/c.bin' }])).toEqual([undefined])
    expect(await readFile(join(root, 'fine', 'c.bin'), 'utf8')).toBe('evil')
  })

  it('the group\'s renames commit by identity: a partial replaced after its write is not renamed', async () => {
    const real = realpathSync(root)
    await mkdir(join(root, 'id'))
    const partial = join(real, 'id', '.x.bin.k.partial')
    const [w] = writePartials([{ partial, root: real, what: 'vol/id/x.bin', offset: 0, length: 3 }], Buffer.from('one'))
    if ('error' in w) throw new Error('not written')
    await unlink(partial)
    await writeFile(partial, 'planted')
    const [err] = renamePartials([{ ...w, dir: join(real, 'id'), partial, target: join(real, 'id', 'x.bin'), what: 'vol/id/x.bin' }])
    expect(err).toEqual({ denied: 'vol/id/x.bin: its partial file was replaced while it was written; not committing' })
    await expect(readFile(join(root, 'id', 'x.bin'))).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('statMany gives what stat gives, or its error, per file', async () => {
    await mkdir(join(root, 'dir'))
    await writeFile(join(root, 'a.bin'), 'abc')
    await writeFile(join(outside, 'secret'), 's')
    await symlink(join(outside, 'secret'), join(root, 'link'))
    const [a, missing, dir, link] = await plugin.statMany!([u('a.bin'), u('nope'), u('dir'), u('link')])
    const one = await plugin.stat(u('a.bin'))
    expect({ size: (a as StatResult).size, mtime: (a as StatResult).mtime }).toEqual({ size: one.size, mtime: one.mtime })
    expect(missing).toBeInstanceOf(NotFoundError)
    expect(dir).toBeInstanceOf(IsADirectoryError)
    expect(link).toBeInstanceOf(PermissionDeniedError)
  })

  it('readFiles reads each file whole and refuses one that is not the version expected', async () => {
    await writeFile(join(root, 'a.bin'), 'alpha')
    await writeFile(join(root, 'b.bin'), 'beta')
    const a = await plugin.stat(u('a.bin'))
    const [ra, rb, rc] = await plugin.readFiles!([
      { url: u('a.bin'), expect: { size: a.size, mtime: a.mtime } },
      { url: u('b.bin'), expect: { size: 99, mtime: 1 } },
      { url: u('c.bin') }
    ])
    expect('data' in ra && Buffer.from(ra.data).toString()).toBe('alpha')
    expect('error' in rb && rb.error).toBeInstanceOf(SourceChangedError)
    expect('error' in rc && rc.error).toBeInstanceOf(NotFoundError)
  })

  it('readFiles reads in the read thread: the files\' bytes side by side in one buffer, each with its digest', async () => {
    await writeFile(join(root, 'p1.bin'), 'one')
    await writeFile(join(root, 'p2.bin'), 'two!')
    const before = threadAnswers()
    const [r1, r2] = await plugin.readFiles!([{ url: u('p1.bin') }, { url: u('p2.bin') }], { algorithm: 'sha256' })
    expect(threadAnswers()).toBeGreaterThan(before)
    if ('error' in r1 || 'error' in r2) throw new Error('not read')
    expect(Buffer.from(r1.data).toString() + Buffer.from(r2.data).toString()).toBe('onetwo!')
    expect(r2.data.buffer).toBe(r1.data.buffer)
    expect(r2.data.byteOffset).toBe(r1.data.byteOffset + 3)
    expect(r1.digest).toBe(createHash('sha256').update('one').digest('hex'))
    expect(r2.digest).toBe(createHash('sha256').update('two!').digest('hex'))
  })

  it('syncFileSystems answers each path through the one sh: true when synced, false when it could not be (the caller then fsyncs)', async () => {
    await mkdir(join(root, 'new\nline'))
    expect(await syncFileSystems([root, join(root, 'new\nline')])).toBe(true)
    expect(await syncFileSystems([join(root, 'missing')])).toBe(false)
    // Answers stay in order after a failure.
    const all = await Promise.all([syncFileSystems([root]), syncFileSystems([join(root, 'missing')]), syncFileSystems([root])])
    expect(all).toEqual([true, false, true])
  })
})
