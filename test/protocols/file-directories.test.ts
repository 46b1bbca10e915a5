import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IsADirectoryError, PermissionDeniedError } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import type { ProtocolPlugin } from '../../protocols/index.ts'

describe('file plug-in: directories and mtimes', () => {
  let root: string
  let plugin: ProtocolPlugin
  const u = (p: string): URL => new URL(`file:///vol/${p}`)
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-file-dirs-'))
    plugin = file({ volumes: [{ name: 'vol', root, readOnly: false }] })
  })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  it('stat and read of a directory say is_a_directory', async () => {
    await mkdir(join(root, 'dataset'))
    await expect(plugin.stat(u('dataset'))).rejects.toBeInstanceOf(IsADirectoryError)
    const read = async (): Promise<void> => { for await (const _ of plugin.read(u('dataset'), { offset: 0 })) break }
    await expect(read()).rejects.toBeInstanceOf(IsADirectoryError)
  })

  it('a writer onto an existing directory fails when it opens, and leaves no partial', async () => {
    await mkdir(join(root, 'incoming'))
    await expect(plugin.write(u('incoming'), { offset: 0, size: 4, key: 'k1' })).rejects.toBeInstanceOf(IsADirectoryError)
    await expect(plugin.openWriterAt!(u('incoming'), { key: 'k2', size: 4, resume: false })).rejects.toBeInstanceOf(IsADirectoryError)
    expect(await readdir(root)).toEqual(['incoming'])
  })

  it('commit sets the mtime it was given, to the millisecond a later stat reads', async () => {
    // A millisecond whose value in seconds has no exact double: the case that loses the last nanoseconds.
    const mtime = 1_700_000_000_123
    const writer = await plugin.write(u('f.bin'), { offset: 0, size: 3, key: 'k3', mtime })
    await writer.write(Buffer.from('abc'))
    await writer.commit()
    expect((await plugin.stat(u('f.bin'))).mtime).toBe(mtime)
    expect(Math.floor((await stat(join(root, 'f.bin'))).mtimeMs)).toBe(mtime)
  })

  it('a writer at offsets gives the object the mode and mtime it was given, at commit', async () => {
    const mtime = 1_700_000_000_123
    const writer = await plugin.openWriterAt!(u('h.bin'), { key: 'k5', size: 3, resume: false, mtime, mode: 0o640 })
    await writer.writeAt(0, [Buffer.from('abc')])
    await writer.commit()
    await writer.abort()
    const st = await stat(join(root, 'h.bin'))
    expect(st.mode & 0o7777).toBe(0o640)
    expect(Math.floor(st.mtimeMs)).toBe(mtime)
  })

  it('without an mtime, commit leaves the file its own', async () => {
    await writeFile(join(root, 'marker'), '')
    const before = (await stat(join(root, 'marker'))).mtimeMs
    const writer = await plugin.write(u('g.bin'), { offset: 0, size: 1, key: 'k4' })
    await writer.write(Buffer.from('x'))
    await writer.commit()
    expect((await stat(join(root, 'g.bin'))).mtimeMs).toBeGreaterThanOrEqual(before)
  })
  it('a commit that defers its directory sync is in place; syncDirectory syncs a directory of the volume, and no other', async () => {
    await mkdir(join(root, 'd'))
    const writer = await plugin.write(u('d/f.bin'), { offset: 0, size: 3, key: 'k9', deferDirectorySync: true })
    await writer.write(Buffer.from('abc'))
    await writer.commit()
    expect(await readFile(join(root, 'd', 'f.bin'), 'utf8')).toBe('abc')
    await plugin.syncDirectory!(u('d/'))
    await plugin.syncDirectory!(u(''))
    const outside = await mkdtemp(join(tmpdir(), 'staccato-file-dirs-out-'))
    try {
      await symlink(outside, join(root, 'out'))
      await expect(plugin.syncDirectory!(u('out/'))).rejects.toBeInstanceOf(PermissionDeniedError)
    } finally {
      await rm(outside, { recursive: true, force: true })
    }
  })

  it('remove takes a file, a link (not its target) and an empty directory; a directory that is not empty stays', async () => {
    await mkdir(join(root, 'full'))
    await writeFile(join(root, 'full', 'x'), 'x')
    await mkdir(join(root, 'empty'))
    await writeFile(join(root, 'target.txt'), 'kept')
    await symlink(join(root, 'target.txt'), join(root, 'link'))
    expect(await plugin.remove!(u('link'))).toBe(true)
    expect(await plugin.remove!(u('empty'))).toBe(true)
    expect(await plugin.remove!(u('full'))).toBe(false)
    expect(await plugin.remove!(u('full/x'))).toBe(true)
    expect((await readdir(root)).sort()).toEqual(['full', 'target.txt'])
    expect(await readFile(join(root, 'target.txt'), 'utf8')).toBe('kept')
  })
})
