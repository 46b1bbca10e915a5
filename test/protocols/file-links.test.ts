import { lstat, mkdir, mkdtemp, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { file } from '../../protocols/index.ts'

/** makeLink: what a tree copied with links: 'copy' asks of the destination's file plug-in. */
describe('file plug-in: makeLink', () => {
  let base: string
  let root: string
  const u = (path: string): URL => new URL(`file:///vol/${path}`)
  const plugin = (): ReturnType<typeof file> => file({ volumes: [{ name: 'vol', root, readOnly: false }] })
  const leftovers = async (): Promise<string[]> => (await readdir(root, { recursive: true })).filter(n => n.endsWith('.partial'))
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'staccato-file-links-'))
    root = join(base, 'vol')
    await mkdir(join(root, 'dir'), { recursive: true })
    await mkdir(join(base, 'outside'))
    await symlink(join(base, 'outside'), join(root, 'escape'))
  })
  afterAll(async () => { await rm(base, { recursive: true, force: true }) })

  it('makes a link, leaves the same link alone, and replaces a file or another link in one rename', async () => {
    const p = plugin()
    expect(await p.makeLink?.(u('l'), 'dir')).toBe(true)
    expect(await readlink(join(root, 'l'))).toBe('dir')
    expect(await p.makeLink?.(u('l'), 'dir')).toBe(false)
    expect(await p.makeLink?.(u('l'), 'other')).toBe(true)
    expect(await readlink(join(root, 'l'))).toBe('other')
    await writeFile(join(root, 'f'), 'a file')
    expect(await p.makeLink?.(u('f'), 'dir')).toBe(true)
    expect((await lstat(join(root, 'f'))).isSymbolicLink()).toBe(true)
    expect(await leftovers()).toEqual([])
  })

  it('a dry run answers and changes nothing, and creates no parent', async () => {
    const p = plugin()
    expect(await p.makeLink?.(u('dry'), 'dir', { dryRun: true })).toBe(true)
    await expect(lstat(join(root, 'dry'))).rejects.toThrow()
    await expect(p.makeLink?.(u('new-dir/dry'), 'x', { dryRun: true })).rejects.toMatchObject({ code: 'not_found' })
    await expect(lstat(join(root, 'new-dir'))).rejects.toThrow()
  })

  it('refuses a directory in its place, and a parent that is a link out of the volume', async () => {
    const p = plugin()
    await expect(p.makeLink?.(u('dir'), 'x')).rejects.toMatchObject({ code: 'is_a_directory' })
    expect((await lstat(join(root, 'dir'))).isDirectory()).toBe(true)
    await expect(p.makeLink?.(u('escape/l'), 'x')).rejects.toMatchObject({ code: 'permission_denied' })
    expect(await readdir(join(base, 'outside'))).toEqual([])
  })
})
