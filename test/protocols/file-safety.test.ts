import { execFileSync } from 'node:child_process'
import { appendFile, link, mkdir, mkdtemp, readFile, readdir, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  InvalidArgumentError, NoSpaceError, NotFoundError, PermissionDeniedError, SourceChangedError
} from '../../mesh/index.ts'
import { file, resolveVolumePath } from '../../protocols/index.ts'
import { MiB, collect } from './support.ts'

const base = await mkdtemp(join(tmpdir(), 'staccato-file-safety-'))
const vol = join(base, 'vol')
const ro = join(base, 'ro')
const outside = join(base, 'outside')
await mkdir(join(vol, 'sub'), { recursive: true })
await mkdir(ro)
await mkdir(outside)
await writeFile(join(outside, 'secret.txt'), 'secret')
await writeFile(join(vol, 'sub', 'a.txt'), 'inside')
await writeFile(join(ro, 'r.txt'), 'read me')
await symlink('../outside', join(vol, 'escape'))
await symlink('../outside/secret.txt', join(vol, 'escape-file'))
await symlink('sub/a.txt', join(vol, 'inner-link'))
const volumes = [{ name: 'vol', root: vol, readOnly: false }, { name: 'ro', root: ro, readOnly: true }]
const plugin = file({ volumes })
afterAll(async () => await rm(base, { recursive: true, force: true }))

const u = (path: string): URL => new URL(`file:///${path}`)

describe('file plug-in confinement', () => {
  it.each([
    ['%2e%2e%2foutside/secret.txt', 'encoded ../'],
    ['sub/..%2f..%2foutside%2fsecret.txt', 'encoded / after ..'],
    ['sub/%2E%2E%2F%2E%2E%2Foutside/secret.txt', 'upper-case encoding'],
    ['%5c..%5coutside', 'backslashes'],
    ['sub/a.txt%00.png', 'a NUL byte'],
    ['escape/secret.txt', 'a symlinked directory leaving the volume'],
    ['escape-file', 'a symlinked file leaving the volume']
  ])('refuses vol/%s (%s) with PermissionDeniedError', async (path) => {
    await expect(plugin.stat(u(`vol/${path}`))).rejects.toBeInstanceOf(PermissionDeniedError)
    await expect(collect(plugin.read(u(`vol/${path}`), { offset: 0 }))).rejects.toBeInstanceOf(PermissionDeniedError)
  })

  it('decodes once: %252e%252e is a file literally named %2e%2e, not a parent', async () => {
    await expect(plugin.stat(u('vol/%252e%252e/outside/secret.txt'))).rejects.toBeInstanceOf(NotFoundError)
  })

  it('sees dot segments already removed by the URL parser, so they cannot leave through a volume', async () => {
    // new URL() turns file:///vol/../outside/… into file:///outside/…: a volume that does not exist.
    await expect(plugin.stat(u('vol/../outside/secret.txt'))).rejects.toThrow(/no volume 'outside'/)
    await expect(plugin.stat(u('vol/%2e%2e/outside/secret.txt'))).rejects.toBeInstanceOf(NotFoundError)
  })

  it('follows symlinks that stay inside the volume', async () => {
    expect((await collect(plugin.read(u('vol/inner-link'), { offset: 0 }))).toString()).toBe('inside')
  })

  it('refuses to write through a symlink that leaves the volume, and creates nothing outside', async () => {
    await expect(plugin.write(u('vol/escape/new.txt'), { offset: 0, key: 'k' })).rejects.toBeInstanceOf(PermissionDeniedError)
    await expect(plugin.write(u('vol/escape/deeper/new.txt'), { offset: 0, key: 'k' })).rejects.toBeInstanceOf(PermissionDeniedError)
    expect(await readdir(outside)).toEqual(['secret.txt'])
  })

  it('does not follow a symlink planted under the partial file name', async () => {
    await symlink('../outside/victim', join(vol, '.planted.bin.k1.partial'))
    await expect(plugin.write(u('vol/planted.bin'), { offset: 0, key: 'k1' })).rejects.toBeInstanceOf(PermissionDeniedError)
    expect(await readdir(outside)).toEqual(['secret.txt'])
  })

  it('commits by identity: a symlink swapped over the partial between write and commit is refused, and nothing is followed', async () => {
    await writeFile(join(outside, 'victim.txt'), 'untouched')
    const writer = await plugin.write(u('vol/swapped.bin'), { offset: 0, size: 5, key: 'swap1' })
    await writer.write(Buffer.from('hello'))
    await writer.sync()
    const partial = join(vol, '.swapped.bin.swap1.partial')
    await rm(partial)
    await symlink('../outside/victim.txt', partial)
    await expect(writer.commit()).rejects.toThrow(new PermissionDeniedError('vol/swapped.bin: its partial file was replaced while it was written; not committing'))
    await writer.abort()
    expect(await readdir(vol)).not.toContain('swapped.bin')
    expect(await readFile(join(outside, 'victim.txt'), 'utf8')).toBe('untouched')
    expect((await readdir(outside)).sort()).toEqual(['secret.txt', 'victim.txt'])
  })

  it('commits by identity: another file renamed over the partial is refused', async () => {
    const writer = await plugin.write(u('vol/replaced.bin'), { offset: 0, key: 'swap2' })
    await writer.write(Buffer.from('mine'))
    const partial = join(vol, '.replaced.bin.swap2.partial')
    await writeFile(join(vol, 'forged'), 'forged')
    await rename(join(vol, 'forged'), partial)
    await expect(writer.commit()).rejects.toBeInstanceOf(PermissionDeniedError)
    await writer.abort()
    expect(await readdir(vol)).not.toContain('replaced.bin')
  })

  it('refuses a hard link or a FIFO planted under the partial file name, and leaves the linked file alone', async () => {
    await writeFile(join(vol, 'precious.txt'), 'precious')
    await link(join(vol, 'precious.txt'), join(vol, '.hard.bin.k2.partial'))
    await expect(plugin.write(u('vol/hard.bin'), { offset: 0, key: 'k2' })).rejects.toThrow(/hard link/)
    expect(await readFile(join(vol, 'precious.txt'), 'utf8')).toBe('precious')
    execFileSync('mkfifo', [join(vol, '.fifo.bin.k3.partial')])
    await expect(plugin.write(u('vol/fifo.bin'), { offset: 0, key: 'k3' })).rejects.toThrow(new InvalidArgumentError('vol/fifo.bin: not a regular file'))
  })

  it('openWriterAt does not follow a symlink planted under the partial name, resumed or not, and writes nothing outside', async () => {
    await writeFile(join(outside, 'target-at.txt'), 'untouched')
    await symlink('../outside/target-at.txt', join(vol, '.at.bin.dist1.partial'))
    for (const resume of [false, true]) {
      await expect(plugin.openWriterAt!(u('vol/at.bin'), { key: 'dist1', size: 1024, resume })).rejects.toThrow(new PermissionDeniedError("vol/at.bin: a symbolic link is planted under its partial file's name (.at.bin.dist1.partial); not following it"))
    }
    expect(await readFile(join(outside, 'target-at.txt'), 'utf8')).toBe('untouched')
  })

  it('openWriterAt commits by identity too', async () => {
    const writer = await plugin.openWriterAt!(u('vol/at-swap.bin'), { key: 'dist2', size: 4, resume: false })
    await writer.writeAt(0, [Buffer.from('ab'), Buffer.from('cd')])
    const partial = join(vol, '.at-swap.bin.dist2.partial')
    await rm(partial)
    await symlink('../outside/secret.txt', partial)
    await expect(writer.commit()).rejects.toBeInstanceOf(PermissionDeniedError)
    await writer.abort()
    expect(await readdir(vol)).not.toContain('at-swap.bin')
    expect(await readFile(join(outside, 'secret.txt'), 'utf8')).toBe('secret')
  })

  it('does not hang on a FIFO where a file is read, or where a kept partial is read back', async () => {
    execFileSync('mkfifo', [join(vol, 'pipe.bin')])
    await expect(collect(plugin.read(u('vol/pipe.bin'), { offset: 0 }))).rejects.toBeInstanceOf(InvalidArgumentError)
    const writer = await plugin.write(u('vol/kept.bin'), { offset: 0, key: 'k4' })
    await writer.write(Buffer.alloc(10, 7))
    await writer.abort({ keepPartial: true })
    const resumed = await plugin.write(u('vol/kept.bin'), { offset: 10, key: 'k4' })
    const partial = join(vol, '.kept.bin.k4.partial')
    await rm(partial)
    execFileSync('mkfifo', [partial])
    await expect(collect(resumed.readPartial!())).rejects.toBeInstanceOf(PermissionDeniedError)
    await resumed.abort()
  })

  it('names an unknown volume and the known ones', async () => {
    await expect(plugin.stat(u('nope/x'))).rejects.toThrow(new NotFoundError("no volume 'nope' on this agent (volumes: vol, ro)"))
  })

  it('refuses writes to a read-only volume but reads from it', async () => {
    await expect(plugin.write(u('ro/new.txt'), { offset: 0, key: 'k' })).rejects.toBeInstanceOf(PermissionDeniedError)
    expect((await collect(plugin.read(u('ro/r.txt'), { offset: 0 }))).toString()).toBe('read me')
    expect(await readdir(ro)).toEqual(['r.txt'])
  })

  it('refuses write keys that could change the partial file name', async () => {
    await expect(plugin.write(u('vol/k.bin'), { offset: 0, key: '../../x' })).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(plugin.write(u('vol/k.bin'), { offset: 0, key: '' })).rejects.toBeInstanceOf(InvalidArgumentError)
  })
})

describe('resolveVolumePath', () => {
  it('returns the real path of a file inside the volume', async () => {
    expect(await resolveVolumePath(volumes, 'vol', 'inner-link')).toBe(await realpath(join(vol, 'sub', 'a.txt')))
  })

  it('refuses traversal, absolute paths and escaping symlinks, and names unknown volumes', async () => {
    await expect(resolveVolumePath(volumes, 'vol', '../outside/secret.txt')).rejects.toBeInstanceOf(PermissionDeniedError)
    await expect(resolveVolumePath(volumes, 'vol', 'sub/../../outside')).rejects.toBeInstanceOf(PermissionDeniedError)
    await expect(resolveVolumePath(volumes, 'vol', '/etc/passwd')).rejects.toBeInstanceOf(PermissionDeniedError)
    await expect(resolveVolumePath(volumes, 'vol', 'escape/secret.txt')).rejects.toBeInstanceOf(PermissionDeniedError)
    await expect(resolveVolumePath(volumes, 'x', 'a')).rejects.toBeInstanceOf(NotFoundError)
    await expect(resolveVolumePath(volumes, 'ro', 'a', { forWrite: true })).rejects.toBeInstanceOf(PermissionDeniedError)
  })

  it('creates missing parents inside the volume for a write', async () => {
    const path = await resolveVolumePath(volumes, 'vol', 'new/parent/f.bin', { forWrite: true })
    expect(path).toBe(join(await realpath(vol), 'new', 'parent', 'f.bin'))
    await expect(resolveVolumePath(volumes, 'vol', 'other/parent/f.bin', { forWrite: true, createParents: false })).rejects.toBeInstanceOf(NotFoundError)
  })
})

describe('file plug-in partial files', () => {
  it('writes to .<name>.<key>.partial beside the target and renames it on commit', async () => {
    const writer = await plugin.write(u('vol/sub/p.bin'), { offset: 0, key: 'job-1' })
    await writer.write(Buffer.from('hello'))
    expect(await writer.sync()).toBe(5)
    expect((await readdir(join(vol, 'sub'))).sort()).toEqual(['.p.bin.job-1.partial', 'a.txt'])
    await writer.commit()
    expect((await readdir(join(vol, 'sub'))).sort()).toEqual(['a.txt', 'p.bin'])
    expect(await readFile(join(vol, 'sub', 'p.bin'), 'utf8')).toBe('hello')
  })

  it('tells the caller to restart from 0 when the partial to resume is gone or too short', async () => {
    await expect(plugin.write(u('vol/gone.bin'), { offset: 10, key: 'k' })).rejects.toBeInstanceOf(SourceChangedError)
    const writer = await plugin.write(u('vol/short.bin'), { offset: 0, key: 'k' })
    await writer.write(Buffer.alloc(5))
    await writer.abort({ keepPartial: true })
    await expect(plugin.write(u('vol/short.bin'), { offset: 10, key: 'k' })).rejects.toThrow(/holds only 5 bytes/)
  })

  it('does not list partial files or symlinks that leave the volume', async () => {
    const writer = await plugin.write(u('vol/listed.bin'), { offset: 0, key: 'k' })
    await writer.write(Buffer.alloc(3))
    await writer.sync()
    const names = []
    for await (const e of plugin.list!(u('vol/'))) names.push(e.path)
    expect(names).toContain('inner-link')
    expect(names).not.toContain('escape')
    expect(names).not.toContain('escape-file')
    expect(names.filter(n => n.endsWith('.partial'))).toEqual([])
    await writer.abort()
  })

  it('throws SourceChangedError when the file changes while it is read', async () => {
    await writeFile(join(vol, 'growing.bin'), Buffer.alloc(3 * MiB))
    const chunks = plugin.read(u('vol/growing.bin'), { offset: 0 })
    await expect((async () => {
      for await (const _chunk of chunks) await appendFile(join(vol, 'growing.bin'), 'x')
    })()).rejects.toBeInstanceOf(SourceChangedError)
  })
})

/** A real full file system: a 1 MiB tmpfs. Needs root and permission to mount (containers may forbid it). */
async function mountSmallTmpfs (): Promise<string | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'staccato-tmpfs-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'ignore' })
    return dir
  } catch {
    await rm(dir, { recursive: true, force: true })
    return undefined
  }
}

describe('file plug-in on a full disk', async () => {
  const small = await mountSmallTmpfs()
  afterAll(async () => {
    if (small === undefined) return
    execFileSync('umount', [small])
    await rm(small, { recursive: true, force: true })
  })
  const full = file({ volumes: [{ name: 'small', root: small ?? '/nonexistent', readOnly: false }] })
  const why = small === undefined ? ' (SKIPPED: mounting a tmpfs needs root and mount permission)' : ''

  it.skipIf(small === undefined)(`throws NoSpaceError and removes the partial${why}`, async () => {
    const writer = await full.write(u('small/big.bin'), { offset: 0, key: 'k' })
    const chunk = Buffer.alloc(64 << 10, 1)
    await expect((async () => {
      for (let i = 0; i < 64; i++) await writer.write(chunk)
      await writer.commit()
    })()).rejects.toBeInstanceOf(NoSpaceError)
    await writer.abort()
    expect(await readdir(small!)).toEqual([])
  })

  it.skipIf(small === undefined)(`refuses up front a write whose declared size does not fit${why}`, async () => {
    await expect(full.write(u('small/big.bin'), { offset: 0, size: 4 * MiB, key: 'k' })).rejects.toBeInstanceOf(NoSpaceError)
    expect(await readdir(small!)).toEqual([])
  })
})
