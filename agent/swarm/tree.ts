import { createHash } from 'node:crypto'
import { ChecksumMismatchError, InvalidArgumentError, PermissionDeniedError, TREE_TABLE_BYTES, UnsupportedError, toStaccatoError } from '../../mesh/index.ts'
import type { Manifest, TreeManifest } from '../../mesh/index.ts'
import { resolveVolumePath } from '../../protocols/index.ts'
import type { ProtocolPlugin, Volume, WriterAt } from '../../protocols/index.ts'
import { listMessages, volumeAndPath } from '../tree/holder.ts'
import { sameSizeAndMtime } from '../copy/destination.ts'
import type { Resolved } from '../resolve.ts'
import { FileCompletion, checkTable, checkTreePath, fileSegments, piecesWithin } from './file-table.ts'
import { PieceHasher } from './image.ts'
import { effectivePieceSize } from './manifest.ts'
import type { PieceStorage } from './storage.ts'

/**
 * A tree distribution through the swarm: the object its pieces cut is the
 * tree's files laid end to end (file-table.ts), so one manifest covers the
 * whole tree and a piece may span files, as in a multi-file torrent. The
 * seed lists and hashes the tree once; each destination writes every file
 * into its own partial beside its target, and renames a file into place as
 * soon as the pieces holding it arrived and the whole file hashed right.
 * The swarm's code does not know about files at all.
 */

/** Whole-file checks read a file back in reads of this size. */
const VERIFY_READ = 4 * 1024 * 1024

type TreeFile = TreeManifest['files'][number]

export interface TreeManifestOptions {
  volumes: ProtocolPlugin
  volumeList: readonly Volume[]
  /** The source directory as a file:// URL of the volumes plug-in (ends in /). */
  dir: URL
  filter: { include?: string[], exclude?: string[] }
  pieceSize: number
  signal?: AbortSignal
}

function fileUrl (dir: URL, path: string): URL {
  return new URL(dir.href + path.split('/').map(encodeURIComponent).join('/'))
}

/**
 * On the seed: lists the tree (selected by the globs; links and special
 * files skipped with their reason, as a tree copy does), then reads every
 * file once, hashing the pieces of the concatenation and each file whole.
 */
export async function treeManifest (o: TreeManifestOptions): Promise<Manifest> {
  const files: TreeFile[] = []
  const dirs: TreeManifest['dirs'] = []
  const skipped: TreeManifest['skipped'] = []
  let size = 0
  // The table's JSON size as it grows, each file counted with its digest (filled in below).
  let bytes = 0
  for await (const m of listMessages({ volumes: o.volumes }, o.dir, o.filter)) {
    if (m.t !== 'entries') continue
    for (const e of m.entries) {
      let row: TreeManifest['dirs'][number] | TreeManifest['skipped'][number] | TreeFile
      if (e.type === 'directory') dirs.push(row = { path: e.path, mode: e.mode })
      else if (e.type === 'skipped') skipped.push(row = { path: e.path, reason: e.reason ?? 'not a regular file' })
      else {
        files.push(row = { path: e.path, size: e.size, offset: size, mode: e.mode, mtime: e.mtime, sha256: '0'.repeat(64) })
        size += e.size
      }
      bytes += Buffer.byteLength(JSON.stringify(row)) + 1
    }
    if (bytes > TREE_TABLE_BYTES) {
      throw new InvalidArgumentError(`source: the tree's file table passes ${TREE_TABLE_BYTES / 1024} KiB at ${files.length} files; a distribution carries it in one control message, so send a tree this large to each destination as its own transfer`)
    }
  }
  const pieceSize = effectivePieceSize(size, o.pieceSize)
  const hasher = new PieceHasher(pieceSize)
  const confine = await confinement(o.volumeList, o.dir)
  for (const f of files) {
    await confine(f.path)
    const whole = createHash('sha256')
    for await (const chunk of o.volumes.read(fileUrl(o.dir, f.path), { offset: 0, expect: { size: f.size, mtime: f.mtime }, signal: o.signal })) {
      whole.update(chunk)
      hasher.update(chunk)
    }
    f.sha256 = whole.digest('hex')
  }
  const { pieces, sha256 } = hasher.finish()
  return { size, mtime: 0, pieceSize, sha256, pieces, tree: { files, dirs, skipped } }
}

/** Checks that a path of the tree leads to a file inside the tree: a link swapped in since the listing leads nowhere else. */
async function confinement (volumeList: readonly Volume[], dir: URL): Promise<(path: string) => Promise<void>> {
  const { volume, path: dirPath } = volumeAndPath(dir)
  const realDir = await resolveVolumePath(volumeList, volume, dirPath)
  return async path => {
    const real = await resolveVolumePath(volumeList, volume, `${dirPath}${dirPath === '' ? '' : '/'}${path}`)
    if (!real.startsWith(`${realDir}/`)) throw new PermissionDeniedError(`${path}: leaves the tree`)
  }
}

/** The seed's pieces, read from the files of the tree, each checked to be the version the manifest was made from. */
export function treeSourceStorage (manifest: Manifest, volumes: ProtocolPlugin, volumeList: readonly Volume[], dir: URL): PieceStorage {
  const { files } = manifest.tree as TreeManifest
  const checked = new Set<number>()
  let confine: ((path: string) => Promise<void>) | undefined
  return {
    async read (offset, length) {
      const parts: Uint8Array[] = []
      for (const s of fileSegments(files, offset, length)) {
        const f = files[s.file]
        if (!checked.has(s.file)) {
          confine ??= await confinement(volumeList, dir)
          await confine(f.path)
          checked.add(s.file)
        }
        for await (const chunk of volumes.read(fileUrl(dir, f.path), { offset: s.at, length: s.length, expect: { size: f.size, mtime: f.mtime } })) parts.push(chunk)
      }
      return parts
    }
  }
}

/** A destination's writer over the tree's concatenated files. */
export interface TreeWriterAt extends WriterAt {
  /** Pieces whose every byte lies in files already in place (there before, or verified after a restart). */
  heldPieces(): number[]
  /** Files in place and verified so far. */
  filesDone(): number
  /** Pieces written before a restart (the journal's): the files they complete are verified and placed now. */
  restored(pieces: Iterable<number>): Promise<void>
}

export function isTreeWriter (w: WriterAt): w is TreeWriterAt {
  return typeof (w as Partial<TreeWriterAt>).filesDone === 'function'
}

export interface TreeWriterOptions {
  /** The destination directory (ends in '/'), resolved. */
  dst: Resolved
  location: string
  key: string
  manifest: Manifest
  resume: boolean
}

/**
 * Opens a destination's directory for a tree's pieces: checks the file
 * table, creates every directory (empty ones included), and opens a partial
 * beside each file's target. A file already in place with the same size,
 * mtime and sha256 (an earlier run, or this one before a restart) is held:
 * the pieces that lie wholly in held files are not fetched.
 */
export async function openTreeWriter (o: TreeWriterOptions): Promise<TreeWriterAt> {
  const tree = o.manifest.tree as TreeManifest
  const { plugin, url: dir } = o.dst
  if (!dir.pathname.endsWith('/')) throw new InvalidArgumentError(`${o.location}: a tree is written to a directory (end the destination with '/')`)
  if (plugin.capabilities.writeAt !== true || plugin.openWriterAt === undefined || plugin.makeDirectory === undefined) {
    throw new UnsupportedError(`the ${plugin.scheme} plug-in cannot hold a tree distribution`)
  }
  checkTable(tree.files, o.manifest.size)
  for (const d of tree.dirs) checkTreePath(d.path)
  await plugin.makeDirectory(dir)
  // Owner-writable whatever the source's mode, as a tree copy makes them: a read-only directory could not receive its files.
  for (const d of tree.dirs) await plugin.makeDirectory(fileUrl(dir, d.path), { mode: d.mode | 0o700 })
  const held = new Set<number>()
  const writers = new Map<number, WriterAt>()
  try {
    for (const [i, f] of tree.files.entries()) {
      if (await holds(plugin, fileUrl(dir, f.path), f)) {
        held.add(i)
        continue
      }
      // An empty file has no piece: it is written at the end.
      if (f.size === 0) continue
      writers.set(i, await plugin.openWriterAt(fileUrl(dir, f.path), { key: o.key, size: f.size, resume: o.resume, mtime: f.mtime, mode: f.mode }))
    }
  } catch (err) {
    await Promise.all([...writers.values()].map(async w => await w.abort({ keepPartial: true }).catch(() => {})))
    throw toStaccatoError(err)
  }
  return new DirectoryWriterAt(o, tree.files, held, writers)
}

/** Whether the target holds the file already: same size and mtime, then the same sha256 (read back). */
async function holds (plugin: ProtocolPlugin, url: URL, f: TreeFile): Promise<boolean> {
  const there = await plugin.stat(url).catch(() => undefined)
  if (there === undefined || !sameSizeAndMtime(there, f)) return false
  const hash = createHash('sha256')
  try {
    for await (const chunk of plugin.read(url, { offset: 0 })) hash.update(chunk)
  } catch {
    return false
  }
  return hash.digest('hex') === f.sha256
}

class DirectoryWriterAt implements TreeWriterAt {
  /** Only when every partial was found: a journal's pieces are trusted for all files or for none. */
  readonly resumed: boolean
  private readonly o: TreeWriterOptions
  private readonly files: readonly TreeFile[]
  private readonly held: Set<number>
  private readonly writers: Map<number, WriterAt>
  private readonly completion: FileCompletion
  /** Files being verified and renamed, or done: no more bytes go to them. */
  private readonly placing = new Map<number, Promise<void>>()
  private placed = 0

  constructor (o: TreeWriterOptions, files: readonly TreeFile[], held: Set<number>, writers: Map<number, WriterAt>) {
    this.o = o
    this.files = files
    this.held = held
    this.writers = writers
    this.completion = new FileCompletion(files, o.manifest)
    this.resumed = writers.size > 0 && [...writers.values()].every(w => w.resumed)
  }

  heldPieces (): number[] {
    return piecesWithin(this.files, this.held, this.o.manifest)
  }

  filesDone (): number {
    return this.held.size + this.placed
  }

  async restored (pieces: Iterable<number>): Promise<void> {
    for (const piece of pieces) {
      for (const file of this.completion.written(piece)) if (!this.held.has(file)) await this.place(file)
    }
  }

  private url (file: number): URL {
    return fileUrl(this.o.dst.url, this.files[file].path)
  }

  async writeAt (offset: number, chunks: Uint8Array[]): Promise<void> {
    const bytes = Buffer.concat(chunks)
    let pos = 0
    for (const s of fileSegments(this.files, offset, bytes.length)) {
      const part = bytes.subarray(pos, pos + s.length)
      pos += s.length
      // A held file is whole and verified already; one being placed got these bytes from an earlier copy of the piece.
      if (this.held.has(s.file) || this.placing.has(s.file)) continue
      await this.writers.get(s.file)?.writeAt(s.at, [part])
    }
    // The session writes whole pieces, each only once it hashed to the manifest's piece hash.
    for (const file of this.completion.written(Math.floor(offset / this.o.manifest.pieceSize))) {
      if (!this.held.has(file)) await this.place(file)
    }
  }

  /** Verifies a file whose bytes are all here, then renames it into place (with its mode and mtime). */
  private async place (file: number): Promise<void> {
    let placing = this.placing.get(file)
    if (placing === undefined) {
      placing = this.verifyAndCommit(file)
      this.placing.set(file, placing)
      // A failure is the caller's (it fails this destination); a later caller sees the same.
      placing.catch(() => {})
    }
    await placing
  }

  private async verifyAndCommit (file: number): Promise<void> {
    const f = this.files[file]
    let w = this.writers.get(file)
    if (w === undefined) {
      // An empty file (nothing to verify but its emptiness) is created at its place through a partial all the same.
      if (f.size !== 0) throw new ChecksumMismatchError(`${f.path}: no partial holds its bytes`)
      w = await (this.o.dst.plugin.openWriterAt as NonNullable<ProtocolPlugin['openWriterAt']>)(this.url(file), { key: this.o.key, size: 0, resume: false, mtime: f.mtime, mode: f.mode })
      this.writers.set(file, w)
    }
    const hash = createHash('sha256')
    for (let at = 0; at < f.size; at += VERIFY_READ) hash.update(await w.readAt(at, Math.min(VERIFY_READ, f.size - at)))
    const digest = hash.digest('hex')
    if (digest !== f.sha256) throw new ChecksumMismatchError(`${f.path}: its bytes hash to ${digest}, the manifest says ${f.sha256}`)
    await w.commit()
    this.placed++
  }

  async readAt (offset: number, length: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = []
    for (const s of fileSegments(this.files, offset, length)) {
      // A file being renamed cannot be read through its writer meanwhile; after the rename it can again.
      await this.placing.get(s.file)?.catch(() => {})
      const w = this.writers.get(s.file)
      if (w !== undefined) {
        parts.push(await w.readAt(s.at, s.length))
        continue
      }
      for await (const chunk of this.o.dst.plugin.read(this.url(s.file), { offset: s.at, length: s.length })) parts.push(chunk)
    }
    return Buffer.concat(parts)
  }

  async sync (): Promise<void> {
    for (const [i, w] of this.writers) if (!this.placing.has(i)) await w.sync()
  }

  /**
   * The session calls this once the whole concatenation hashed to the
   * manifest's sha256: files still waiting (empty ones, and those whose
   * pieces came before a restart) are verified and placed now.
   */
  async commit (): Promise<void> {
    for (let i = 0; i < this.files.length; i++) if (!this.held.has(i)) await this.place(i)
  }

  async abort (opts?: { keepPartial?: boolean }): Promise<void> {
    await Promise.all([...this.placing.values()].map(async p => await p.catch(() => {})))
    for (const w of this.writers.values()) await w.abort(opts)
  }
}
