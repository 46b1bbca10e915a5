import { createHash } from 'node:crypto'
import { constants } from 'node:fs'
import { lstat, open, realpath, rename, statfs, unlink } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { basename } from 'node:path'
import { NoSpaceError, PermissionDeniedError } from '../mesh/index.ts'
import { fsError } from './fs-errors.ts'
import { assertHandleInside } from './volumes.ts'

/**
 * The defences every writer of the file plug-in shares (the sequential
 * Writer and the random-access WriterAt): how a partial file is named,
 * opened and committed. Whoever can write in a volume's directory can plant
 * anything under a partial's predictable name, or swap it while it is being
 * written; nothing here trusts what the name points at.
 */

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants

/**
 * `.<basename>.<key>.partial` beside the target: deterministic, so that a later
 * attempt of the same transfer (same key) finds it and resumes. Names that
 * would pass NAME_MAX are hashed instead, still deterministically.
 */
export function partialName (base: string, key: string): string {
  const name = `.${base}.${key}.partial`
  if (Buffer.byteLength(name) <= 255) return name
  return `.${createHash('sha256').update(base).update('\0').update(key).digest('hex').slice(0, 40)}.partial`
}

export function isPartialName (name: string): boolean {
  return name.startsWith('.') && name.endsWith('.partial')
}

export async function checkFreeSpace (dir: string, needed: number, what: string): Promise<void> {
  if (needed <= 0) return
  const fs = await statfs(dir)
  const free = fs.bavail * fs.bsize
  if (free < needed) throw new NoSpaceError(`${what}: needs ${needed} more bytes, the volume has ${free} free`)
}

/**
 * Opens a partial file with `flags` (never O_TRUNC: truncate after the checks)
 * and checks what was opened. O_NOFOLLOW refuses a symlink planted under the
 * name (ELOOP → PermissionDeniedError); O_NONBLOCK keeps a planted FIFO from
 * hanging the open (it has no effect on regular files). The handle must then
 * be a regular file inside the volume with no other name: a hard link to a
 * file elsewhere would otherwise be truncated and filled through this name.
 */
export async function openPartialFile (partial: string, flags: number, root: string, what: string): Promise<FileHandle> {
  const fh = await open(partial, flags | O_NOFOLLOW | O_NONBLOCK, 0o666).catch(err => {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new PermissionDeniedError(`${what}: a symbolic link is planted under its partial file's name (${basename(partial)}); not following it`, { cause: err })
    }
    throw fsError(err, what)
  })
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new PermissionDeniedError(`${what}: its partial file is not a regular file; not writing through it`)
    if (st.nlink > 1) throw new PermissionDeniedError(`${what}: its partial file has other names (a hard link); not writing through it`)
    await assertHandleInside(fh, root, what)
    return fh
  } catch (err) {
    await fh.close()
    throw err
  }
}

export interface CommitPaths {
  dir: string
  partial: string
  target: string
  what: string
  /** The caller syncs the directory later, once for many files. */
  deferDirectorySync?: boolean
}

/**
 * Renames the partial onto the target only if the name still holds the file
 * this handle wrote (commit by identity): a symlink or another file swapped in
 * under the partial's name since it was opened is refused, so the target never
 * becomes something other than the bytes that were written and verified. The
 * caller has synced the handle; it stays open across the check and the rename
 * so that its inode cannot be reused meanwhile.
 */
export async function commitPartial (fh: FileHandle, p: CommitPaths): Promise<void> {
  // The parent was real when the writer opened; if it was swapped since, the rename would land elsewhere.
  if (await realpath(p.dir).catch(() => undefined) !== p.dir) {
    throw new PermissionDeniedError(`${p.what}: its directory changed while it was written; not committing`)
  }
  const mine = await fh.stat({ bigint: true })
  const named = await lstat(p.partial, { bigint: true }).catch(err => { throw fsError(err, p.what) })
  if (!named.isFile() || named.dev !== mine.dev || named.ino !== mine.ino) {
    throw new PermissionDeniedError(`${p.what}: its partial file was replaced while it was written; not committing`)
  }
  await rename(p.partial, p.target).catch(err => { throw fsError(err, p.what) })
  if (p.deferDirectorySync === true) return
  await syncDirectoryPath(p.dir)
}

/** The renames in a directory are durable only once the directory is. */
export async function syncDirectoryPath (dir: string): Promise<void> {
  const dh = await open(dir, O_RDONLY | O_DIRECTORY)
  try {
    await dh.sync()
  } finally {
    await dh.close()
  }
}

/** Removes a partial file by name; unlink() removes the name, never what a symlink there points at. Gone already is fine. */
export async function removePartialFile (partial: string, what: string): Promise<void> {
  await unlink(partial).catch(err => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(err, what)
  })
}
