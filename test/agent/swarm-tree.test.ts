import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChecksumMismatchError, PermissionDeniedError, SourceChangedError, parseLocation } from '../../mesh/index.ts'
import type { Manifest } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import type { ProtocolPlugin, Volume } from '../../protocols/index.ts'
import { openTreeWriter } from '../../agent/swarm/tree-writer.ts'
import { treeManifest, treeSourceStorage } from '../../agent/swarm/tree-seed.ts'
import { piecesOfFile } from '../../agent/swarm/file-table.ts'
import { pieceCount, pieceRange } from '../../agent/swarm/manifest.ts'

const KiB = 1024
const PIECE = 64 * KiB

describe('a tree distribution over real files (the file plug-in in a temporary volume)', () => {
  let root: string
  let volumes: Volume[]
  let plugin: ProtocolPlugin
  let manifest: Manifest
  const dst = (dir: string): { plugin: ProtocolPlugin, url: URL, location: ReturnType<typeof parseLocation> } =>
    ({ plugin, url: new URL(`file:///vol/${dir}/`), location: parseLocation(`agent://d/vol/${dir}/`, 'destination') })

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-swarm-tree-'))
    volumes = [{ name: 'vol', root, readOnly: false }]
    plugin = file({ volumes })
    const src = join(root, 'src')
    await mkdir(join(src, 'a'), { recursive: true })
    await mkdir(join(src, 'b', 'empty'), { recursive: true })
    await writeFile(join(src, 'a', 'x.bin'), randomBytes(100 * KiB + 1))
    await writeFile(join(src, 'a', 'y.txt'), 'ten bytes!')
    await writeFile(join(src, 'e.bin'), '')
    await writeFile(join(src, 'z.bin'), randomBytes(200 * KiB + 7))
    await writeFile(join(src, 'skip.tmp'), 'left out')
    await symlink('z.bin', join(src, 'link'))
    manifest = await treeManifest({ volumes: plugin, volumeList: volumes, dir: new URL('file:///vol/src/'), filter: { exclude: ['*.tmp'] }, pieceSize: PIECE })
  })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  it('makes one manifest over the files laid end to end, each with its own digest; links skipped with their reason', async () => {
    const tree = manifest.tree!
    const sizes = Object.fromEntries(tree.files.map(f => [f.path, f.size]))
    expect(sizes).toEqual({ 'a/x.bin': 100 * KiB + 1, 'a/y.txt': 10, 'e.bin': 0, 'z.bin': 200 * KiB + 7 })
    let at = 0
    for (const f of tree.files) {
      expect(f.offset).toBe(at)
      at += f.size
      expect(f.sha256).toBe(createHash('sha256').update(await readFile(join(root, 'src', f.path))).digest('hex'))
    }
    expect(manifest.size).toBe(at)
    expect(tree.dirs.map(d => d.path).sort()).toEqual(['a', 'b', 'b/empty'])
    expect(tree.skipped).toEqual([{ path: 'link', reason: 'symbolic link (not followed)' }])
    // The seed's pieces are the concatenation's bytes, and hash to the manifest's.
    const seed = treeSourceStorage(manifest, plugin, volumes, new URL('file:///vol/src/'))
    for (let p = 0; p < pieceCount(manifest); p++) {
      const { offset, length } = pieceRange(manifest, p)
      expect(createHash('sha256').update(Buffer.concat(await seed.read(offset, length))).digest('hex')).toBe(manifest.pieces[p])
    }
  })

  it('the seed refuses to serve a piece of a file that changed since the manifest (source_changed)', async () => {
    const seed = treeSourceStorage(manifest, plugin, volumes, new URL('file:///vol/src/'))
    const z = manifest.tree!.files.find(f => f.path === 'z.bin')!
    await writeFile(join(root, 'src', 'z.bin'), randomBytes(z.size + 1))
    const { first } = piecesOfFile(z, manifest.pieceSize)!
    const { offset, length } = pieceRange(manifest, first)
    await expect(seed.read(offset, length)).rejects.toBeInstanceOf(SourceChangedError)
  })

  it('the seed does not follow a link swapped into the tree since the manifest to a file outside it', async () => {
    const seed = treeSourceStorage(manifest, plugin, volumes, new URL('file:///vol/src/'))
    const y = manifest.tree!.files.find(f => f.path === 'a/y.txt')!
    await writeFile(join(root, 'secret.txt'), 'ten bytes?')
    await rm(join(root, 'src', 'a', 'y.txt'))
    await symlink(join(root, 'secret.txt'), join(root, 'src', 'a', 'y.txt'))
    const { first } = piecesOfFile(y, manifest.pieceSize)!
    const { offset, length } = pieceRange(manifest, first)
    await expect(seed.read(offset, length)).rejects.toBeInstanceOf(PermissionDeniedError)
  })

  it('places each file as soon as the pieces holding it are written, and not before; empty files and directories at the end', async () => {
    const seed = treeSourceStorage(manifest, plugin, volumes, new URL('file:///vol/src/'))
    const fds = async (): Promise<number> => (await readdir('/proc/self/fd')).length
    const before = await fds()
    const writer = await openTreeWriter({ dst: dst('copy'), location: 'agent://d/vol/copy/', key: 'dist1', manifest, resume: false })
    // The partials are made up front, but no file's handle stays open before its pieces come.
    expect(await fds()).toBeLessThanOrEqual(before)
    const out = join(root, 'copy')
    expect((await stat(join(out, 'b', 'empty'))).isDirectory()).toBe(true)
    const written = new Set<number>()
    const visible = async (): Promise<string[]> => (await readdir(out, { recursive: true, withFileTypes: true })).filter(e => e.isFile() && !e.name.endsWith('.partial')).map(e => join(e.parentPath, e.name).slice(out.length + 1)).sort()
    for (let p = pieceCount(manifest) - 1; p >= 0; p--) {
      const { offset, length } = pieceRange(manifest, p)
      await writer.writeAt(offset, await seed.read(offset, length))
      written.add(p)
      const whole = manifest.tree!.files.filter(f => {
        const r = piecesOfFile(f, manifest.pieceSize)
        if (r === undefined) return false
        for (let i = r.first; i <= r.last; i++) if (!written.has(i)) return false
        return true
      }).map(f => f.path).sort()
      expect(await visible(), `after piece ${p}`).toEqual(whole)
    }
    expect(writer.filesDone()).toBe(3)
    // Every file with bytes is in place, and its handle gone.
    expect(await fds()).toBeLessThanOrEqual(before)
    await writer.commit()
    await writer.abort()
    expect(await visible()).toEqual(['a/x.bin', 'a/y.txt', 'e.bin', 'z.bin'])
    for (const f of manifest.tree!.files) {
      expect((await readFile(join(out, f.path))).equals(await readFile(join(root, 'src', f.path))), f.path).toBe(true)
      expect(Math.floor((await stat(join(out, f.path))).mtimeMs), f.path).toBe(f.mtime)
    }
    // Opened again over the same directory: every file is held, so every piece is.
    const again = await openTreeWriter({ dst: dst('copy'), location: 'agent://d/vol/copy/', key: 'dist2', manifest, resume: false })
    expect(again.heldPieces()).toEqual([...Array(pieceCount(manifest)).keys()])
    expect(again.filesDone()).toBe(4)
    await again.abort({ keepPartial: false })
    expect((await readdir(out, { recursive: true })).filter(n => n.endsWith('.partial'))).toEqual([])
  })

  it('after a restart, keeps the files in place and places at once those the journal\'s pieces complete', async () => {
    const seed = treeSourceStorage(manifest, plugin, volumes, new URL('file:///vol/src/'))
    const out = join(root, 'resume')
    const first = await openTreeWriter({ dst: dst('resume'), location: 'agent://d/vol/resume/', key: 'dist5', manifest, resume: true })
    const z = manifest.tree!.files.find(f => f.path === 'z.bin')!
    const range = piecesOfFile(z, manifest.pieceSize)!
    // Every piece but z.bin's last one: z.bin is not placed, the files wholly before or after it may be.
    const have = [...Array(pieceCount(manifest)).keys()].filter(p => p !== range.last)
    for (const p of have) {
      const { offset, length } = pieceRange(manifest, p)
      await first.writeAt(offset, await seed.read(offset, length))
    }
    await first.sync()
    const placedBefore = first.filesDone()
    // The crash: the writer's partials stay (what the agent leaves when it dies).
    await first.abort({ keepPartial: true })
    await expect(stat(join(out, 'z.bin'))).rejects.toThrow()

    const again = await openTreeWriter({ dst: dst('resume'), location: 'agent://d/vol/resume/', key: 'dist5', manifest, resume: true })
    expect(again.resumed).toBe(true)
    // The files placed before the crash are held (their partials are gone); the journal's pieces are restored.
    expect(again.filesDone()).toBe(placedBefore)
    await again.restored(have)
    expect(again.filesDone()).toBe(placedBefore)
    const { offset, length } = pieceRange(manifest, range.last)
    await again.writeAt(offset, await seed.read(offset, length))
    expect((await readFile(join(out, 'z.bin'))).equals(await readFile(join(root, 'src', 'z.bin')))).toBe(true)
    await again.commit()
    await again.abort()
    expect((await readdir(out, { recursive: true })).filter(n => n.endsWith('.partial'))).toEqual([])
  })

  it('refuses to place a file whose bytes do not hash to its digest, and leaves it invisible', async () => {
    const seed = treeSourceStorage(manifest, plugin, volumes, new URL('file:///vol/src/'))
    const files = manifest.tree!.files.map(f => f.path === 'a/y.txt' ? { ...f, sha256: '0'.repeat(64) } : f)
    const wrong = { ...manifest, tree: { ...manifest.tree!, files } }
    const writer = await openTreeWriter({ dst: dst('bad'), location: 'agent://d/vol/bad/', key: 'dist3', manifest: wrong, resume: false })
    // The one piece that holds y.txt (10 bytes) completes it.
    const y = piecesOfFile(files.find(f => f.path === 'a/y.txt')!, wrong.pieceSize)!
    expect(y.first).toBe(y.last)
    const { offset, length } = pieceRange(wrong, y.first)
    await expect(writer.writeAt(offset, await seed.read(offset, length))).rejects.toBeInstanceOf(ChecksumMismatchError)
    await expect(stat(join(root, 'bad', 'a', 'y.txt'))).rejects.toThrow()
    await writer.abort({ keepPartial: false })
  })

  it('refuses a tree whose file table would not fit the control message that carries it, saying what to do instead', async () => {
    const big = join(root, 'big')
    await mkdir(big)
    // About 290 bytes of table per file (a 150-character name, its digest, size, offset, mode, mtime): 1,500 pass 384 KiB.
    await Promise.all([...Array(1500).keys()].map(async i => { await writeFile(join(big, `${String(i).padStart(6, '0')}-${'n'.repeat(143)}`), '') }))
    await expect(treeManifest({ volumes: plugin, volumeList: volumes, dir: new URL('file:///vol/big/'), filter: {}, pieceSize: PIECE }))
      .rejects.toThrow(/file table passes 384 KiB at \d+ files; .* send a tree this large to each destination as its own transfer/)
  })

  it('refuses a file table that leads out of the tree before it writes anything', async () => {
    const files = manifest.tree!.files.map((f, i) => i === 0 ? { ...f, path: '../escape.bin' } : f)
    await expect(openTreeWriter({ dst: dst('out'), location: 'agent://d/vol/out/', key: 'dist4', manifest: { ...manifest, tree: { ...manifest.tree!, files } }, resume: false }))
      .rejects.toThrow(/not a path inside the tree/)
    await expect(stat(join(root, 'out'))).rejects.toThrow()
  })
})
