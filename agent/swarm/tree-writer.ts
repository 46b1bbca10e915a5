import { createHash } from 'node:crypto'
import { ChecksumMismatchError, InvalidArgumentError, UnsupportedError, toStaccatoError } from '../../mesh/index.ts'
import type { Manifest, TreeManifest } from '../../mesh/index.ts'
import type { ProtocolPlugin, WriterAt } from '../../protocols/index.ts'
import { sameSizeAndMtime } from '../copy/destination.ts'
import type { Resolved } from '../resolve.ts'
import { FileCompletion, checkTable, checkTreePath, fileSegments, fileUrl, piecesWithin } from './file-table.ts'

/**
 * A tree distribution's destination (the seed's side is tree-seed.ts): every
 * file is written into its own partial beside its target, and renamed into
 * place as soon as the pieces holding it arrived and the whole file hashed
 * to its sha256 in the manifest.
 */

/** Whole-file checks read a file back in reads of this size. */
const VERIFY_READ = 4 * 1024 * 1024

type TreeFile = TreeManifest['files'][number]

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
  let partials = 0
  let found = 0
  for (const [i, f] of tree.files.entries()) {
    if (await holds(plugin, fileUrl(dir, f.path), f)) {
      held.add(i)
      continue
    }
    // An empty file has no piece: it is written when it is placed.
    if (f.size === 0) continue
    // Every partial is made (or found) now, its space checked, and let go: a file's handle is open only while
    // its pieces arrive, so a tree of thousands of files does not hold thousands of descriptors.
    const w = await plugin.openWriterAt(fileUrl(dir, f.path), { key: o.key, size: f.size, resume: o.resume, mtime: f.mtime, mode: f.mode }).catch(err => { throw toStaccatoError(err) })
    partials++
    if (w.resumed) found++
    await w.abort({ keepPartial: true })
  }
  return new DirectoryWriterAt(o, tree.files, held, partials > 0 && found === partials)
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
  /** The partials open now: files whose pieces are arriving (opened at the first, let go once placed). */
  private readonly open = new Map<number, Promise<WriterAt>>()
  private readonly completion: FileCompletion
  /** Files being verified and renamed, or done: no more bytes go to them. */
  private readonly placing = new Map<number, Promise<void>>()
  private readonly done = new Set<number>()

  constructor (o: TreeWriterOptions, files: readonly TreeFile[], held: Set<number>, resumed: boolean) {
    this.o = o
    this.files = files
    this.held = held
    this.completion = new FileCompletion(files, o.manifest)
    this.resumed = resumed
  }

  /** A file's partial, opened again (with the bytes it holds) on first use. */
  private async writer (file: number): Promise<WriterAt> {
    let w = this.open.get(file)
    if (w === undefined) {
      const f = this.files[file]
      const openWriterAt = this.o.dst.plugin.openWriterAt as NonNullable<ProtocolPlugin['openWriterAt']>
      // An empty file had no partial: it is made now, empty.
      w = openWriterAt.call(this.o.dst.plugin, this.url(file), { key: this.o.key, size: f.size, resume: f.size > 0, mtime: f.mtime, mode: f.mode })
      this.open.set(file, w)
      w.catch(() => { this.open.delete(file) })
    }
    return await w
  }

  heldPieces (): number[] {
    return piecesWithin(this.files, this.held, this.o.manifest)
  }

  filesDone (): number {
    return this.held.size + this.done.size
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
      try {
        await (await this.writer(s.file)).writeAt(s.at, [part])
      } catch (err) {
        // The same piece's other copy completed the file meanwhile: these bytes are already in it.
        if (!this.placing.has(s.file)) throw err
      }
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
    const w = await this.writer(file)
    const hash = createHash('sha256')
    for (let at = 0; at < f.size; at += VERIFY_READ) hash.update(await w.readAt(at, Math.min(VERIFY_READ, f.size - at)))
    const digest = hash.digest('hex')
    if (digest !== f.sha256) throw new ChecksumMismatchError(`${f.path}: its bytes hash to ${digest}, the manifest says ${f.sha256}`)
    await w.commit()
    // In place: it is served from its target from now on, and its handle goes.
    this.done.add(file)
    this.open.delete(file)
    await w.abort()
  }

  async readAt (offset: number, length: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = []
    for (const s of fileSegments(this.files, offset, length)) {
      // A file being renamed cannot be read through its writer meanwhile; after the rename it can again.
      await this.placing.get(s.file)?.catch(() => {})
      if (!this.held.has(s.file) && !this.done.has(s.file)) {
        parts.push(await (await this.writer(s.file)).readAt(s.at, s.length))
        continue
      }
      for await (const chunk of this.o.dst.plugin.read(this.url(s.file), { offset: s.at, length: s.length })) parts.push(chunk)
    }
    return Buffer.concat(parts)
  }

  async sync (): Promise<void> {
    // Every file written since it was opened is still open: a handle goes only once its file is placed.
    for (const [i, w] of this.open) if (!this.placing.has(i)) await (await w).sync()
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
    for (const w of this.open.values()) await (await w.catch(() => undefined))?.abort(opts)
    this.open.clear()
    if (opts?.keepPartial === true) return
    // The partials not open now are removed too: opened (with what they hold) and aborted.
    for (let i = 0; i < this.files.length; i++) {
      if (this.held.has(i) || this.done.has(i) || this.files[i].size === 0) continue
      await (await this.writer(i).catch(() => undefined))?.abort({ keepPartial: false })
    }
    this.open.clear()
  }
}
