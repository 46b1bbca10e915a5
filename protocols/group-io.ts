import type { BigIntStats } from 'node:fs'
import { constants, closeSync, fchmodSync, fstatSync, ftruncateSync, futimesSync, lstatSync, openSync, readlinkSync, realpathSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { basename, dirname, sep } from 'node:path'

/**
 * The system calls of a group of small files (putFiles), with nothing but
 * plain data in and out: they run in the group thread (group-thread.ts),
 * beside the event loop, or inline where no thread can be started. The
 * defences of the file writer (file-partial.ts): O_NOFOLLOW, a regular file
 * with one name, inside the volume by its directory's descriptor (GroupDir),
 * commit by identity.
 * Nothing of mesh/ is imported here: the thread starts in a few ms and a few
 * MiB instead of the second and 135 MiB that loading mesh/ costs.
 */

const { O_RDONLY, O_DIRECTORY, O_WRONLY, O_CREAT, O_NOFOLLOW, O_NONBLOCK } = constants
/**
 * Linux's O_PATH (010000000 in <asm-generic/fcntl.h>; node:fs does not export it): a directory opened only to name
 * it needs no read permission, so a write-only directory (mode 0300) takes files as it did before they were created
 * through its descriptor. Elsewhere a read-only open (there is no /proc to create through there anyway).
 */
const O_PATH_OR_RDONLY = process.platform === 'linux' ? 0o10000000 : O_RDONLY

/** Why a file failed: a system call's error (its errno code), or a refusal (permission_denied). */
export type IoError = { errno: { code?: string, syscall?: string, message: string } } | { denied: string }

class Denied extends Error {}

function ioError (err: unknown): IoError {
  if (err instanceof Denied) return { denied: err.message }
  const e = err as NodeJS.ErrnoException
  return { errno: { code: e.code, syscall: e.syscall, message: String(e.message) } }
}

/** As volumes.ts isInside. */
function inside (root: string, real: string): boolean {
  return real === root || real.startsWith(root.endsWith(sep) ? root : root + sep)
}

/**
 * A group's directory, opened once: its partials are created through
 * /proc/self/fd/<fd>/<name>, i.e. in the very directory whose real path was
 * checked, by its descriptor, whatever its path names by then. One readlink
 * per directory instead of one per file after the file's open, and stronger:
 * a directory swapped for a link (or a link swapped in above it) between its
 * resolution and the group's write makes no file at all outside the volume,
 * where the check after each open caught it only once the file was created
 * there. `at` is '' where there is no /proc (not Linux): the partials are
 * then opened by their paths, as the path checks alone allow.
 */
type GroupDir = { fd: number, real: string, at: string } | { error: IoError }

function openDir (dir: string): GroupDir {
  let fd: number
  try {
    // O_NOFOLLOW: the directory was resolved to its real path; a link at that name now was swapped in.
    fd = openSync(dir, O_PATH_OR_RDONLY | O_DIRECTORY | O_NOFOLLOW)
  } catch (err) {
    // A link opened with O_DIRECTORY | O_NOFOLLOW fails ENOTDIR (Linux), as a file there would.
    const code = (err as NodeJS.ErrnoException).code
    const link = code === 'ELOOP' || (code === 'ENOTDIR' && lstatSync(dir, { throwIfNoEntry: false })?.isSymbolicLink() === true)
    return { error: link ? { denied: 'its directory was replaced by a symbolic link; not writing through it' } : ioError(err) }
  }
  try {
    return { fd, real: readlinkSync(`/proc/self/fd/${fd}`), at: `/proc/self/fd/${fd}/` }
  } catch {
    // No /proc (not Linux): the path checks stand alone.
    return { fd, real: '', at: '' }
  }
}

/** One file to write to its partial: its bytes are `length` bytes at `offset` of the group's one buffer. */
export interface PartialJob { partial: string, root: string, what: string, offset: number, length: number, mode?: number, mtime?: number }

/**
 * The partial written and still open (for the sync and the commit by identity: its device and inode, which its
 * descriptor keeps), or why not (then nothing is left of it).
 */
export type Written = { fd: number, dev: bigint, ino: bigint } | { error: IoError }

export function writePartials (jobs: PartialJob[], bytes: Uint8Array): Written[] {
  const dirs = new Map<string, GroupDir>()
  try {
    return jobs.map(j => {
      const dirPath = dirname(j.partial)
      let dir = dirs.get(dirPath)
      if (dir === undefined) {
        dir = openDir(dirPath)
        dirs.set(dirPath, dir)
      }
      if ('error' in dir) return { error: 'denied' in dir.error ? { denied: `${j.what}: ${dir.error.denied}` } : dir.error }
      if (dir.at !== '' && !inside(j.root, dir.real)) return { error: { denied: `${j.what}: resolves outside its volume (a symbolic link leaves it)` } }
      return writeOne(j, dir.at === '' ? j.partial : dir.at + basename(j.partial), bytes)
    })
  } finally {
    for (const d of dirs.values()) if ('fd' in d) closeSync(d.fd)
  }
}

function writeOne (j: PartialJob, path: string, bytes: Uint8Array): Written {
  let fd: number
  try {
    // A directory at the target name is refused by the rename (EISDIR, is_a_directory): the bytes are in memory, nothing moves for it.
    fd = openSync(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o666)
  } catch (err) {
    return {
      error: (err as NodeJS.ErrnoException).code === 'ELOOP'
        ? { denied: `${j.what}: a symbolic link is planted under its partial file's name (${basename(j.partial)}); not following it` }
        : ioError(err)
    }
  }
  let st: BigIntStats
  try {
    // What the name held is checked before anything is written through it; a planted name is left as it is.
    st = fstatSync(fd, { bigint: true })
    if (!st.isFile()) throw new Denied(`${j.what}: its partial file is not a regular file; not writing through it`)
    if (st.nlink > 1n) throw new Denied(`${j.what}: its partial file has other names (a hard link); not writing through it`)
  } catch (err) {
    closeSync(fd)
    return { error: ioError(err) }
  }
  try {
    // Only a partial left by an earlier attempt holds bytes to cut: on ext4, a truncate to zero marks the file to be
    // flushed at its close (auto_da_alloc), 45-90 µs of kernel time a file measured here, which rsync's receiver never pays.
    if (st.size > 0n) ftruncateSync(fd, 0)
    let at = 0
    while (at < j.length) at += writeSync(fd, bytes, j.offset + at, j.length - at, at)
    // A fresh partial has 0o666 less the umask, most often the source's mode already. Set-id bits are cleared by the
    // kernel on a write, so a mode with them is always set after it.
    if (j.mode !== undefined && ((j.mode & 0o6000) !== 0 || (Number(st.mode) & 0o7777) !== j.mode)) fchmodSync(fd, j.mode)
    // Half a millisecond more, as the file writer does: the floor of the nanosecond mtime is then the source's millisecond.
    if (j.mtime !== undefined) futimesSync(fd, new Date(), (j.mtime + 0.5) / 1000)
    return { fd, dev: st.dev, ino: st.ino }
  } catch (err) {
    discardPartials([{ fd, partial: path }])
    return { error: ioError(err) }
  }
}

/** A partial written (and synced) to rename onto its target; `dir` is the real directory both are in; `dev` and `ino` its descriptor's, from the write. */
export interface RenameJob { fd: number, dev: bigint, ino: bigint, dir: string, partial: string, target: string, what: string }

/** Renames each partial onto its target if its name still holds the file written, and closes it; a failed one is removed. */
export function renamePartials (jobs: RenameJob[]): Array<IoError | undefined> {
  const dirOk = new Map<string, boolean>()
  return jobs.map(o => {
    try {
      // The parent was real when resolved; if it was swapped since, the rename would land elsewhere.
      let ok = dirOk.get(o.dir)
      if (ok === undefined) {
        ok = (() => { try { return realpathSync.native(o.dir) === o.dir } catch { return false } })()
        dirOk.set(o.dir, ok)
      }
      if (!ok) throw new Denied(`${o.what}: its directory changed while it was written; not committing`)
      const named = lstatSync(o.partial, { bigint: true })
      if (!named.isFile() || named.dev !== o.dev || named.ino !== o.ino) throw new Denied(`${o.what}: its partial file was replaced while it was written; not committing`)
      renameSync(o.partial, o.target)
      closeSync(o.fd)
      return undefined
    } catch (err) {
      discardPartials([o])
      return ioError(err)
    }
  })
}

/** Closes and removes partials that will not be renamed. Best effort: a partial left behind is replaced by the next attempt. */
export function discardPartials (jobs: Array<{ fd: number, partial: string }>): void {
  for (const j of jobs) {
    try { closeSync(j.fd) } catch { /* already closed */ }
    try { unlinkSync(j.partial) } catch { /* gone already */ }
  }
}
