import { constants, closeSync, fchmodSync, fstatSync, ftruncateSync, futimesSync, lstatSync, openSync, readlinkSync, realpathSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { basename, sep } from 'node:path'

/**
 * The system calls of a group of small files (putFiles), with nothing but
 * plain data in and out: they run in the group thread (group-thread.ts),
 * beside the event loop, or inline where no thread can be started. The
 * defences of the file writer (file-partial.ts): O_NOFOLLOW, a regular file
 * with one name, inside the volume by its descriptor, commit by identity.
 * Nothing of mesh/ is imported here: the thread starts in a few ms and a few
 * MiB instead of the second and 135 MiB that loading mesh/ costs.
 */

const { O_WRONLY, O_CREAT, O_NOFOLLOW, O_NONBLOCK } = constants

/** Why a file failed: a system call's error (its errno code), or a refusal (permission_denied). */
export type IoError = { errno: { code?: string, syscall?: string, message: string } } | { denied: string }

class Denied extends Error {}

function ioError (err: unknown): IoError {
  if (err instanceof Denied) return { denied: err.message }
  const e = err as NodeJS.ErrnoException
  return { errno: { code: e.code, syscall: e.syscall, message: String(e.message) } }
}

/** As volumes.ts isInside. */
function assertFdInside (fd: number, root: string, what: string): void {
  let real: string
  try {
    real = readlinkSync(`/proc/self/fd/${fd}`)
  } catch {
    // No /proc (not Linux): the path checks stand alone.
    return
  }
  if (real !== root && !real.startsWith(root.endsWith(sep) ? root : root + sep)) throw new Denied(`${what}: resolves outside its volume (a symbolic link leaves it)`)
}

/** One file to write to its partial: its bytes are `length` bytes at `offset` of the group's one buffer. */
export interface PartialJob { partial: string, root: string, what: string, offset: number, length: number, mode?: number, mtime?: number }

/** The partial written and still open (for the sync and the commit by identity), or why not (then nothing is left of it). */
export type Written = { fd: number } | { error: IoError }

export function writePartials (jobs: PartialJob[], bytes: Uint8Array): Written[] {
  return jobs.map(j => {
    let fd: number
    try {
      // A directory at the target name is refused by the rename (EISDIR, is_a_directory): the bytes are in memory, nothing moves for it.
      fd = openSync(j.partial, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o666)
    } catch (err) {
      return {
        error: (err as NodeJS.ErrnoException).code === 'ELOOP'
          ? { denied: `${j.what}: a symbolic link is planted under its partial file's name (${basename(j.partial)}); not following it` }
          : ioError(err)
      }
    }
    let st: ReturnType<typeof fstatSync>
    try {
      // What the name held is checked before anything is written through it; a planted name is left as it is.
      st = fstatSync(fd)
      if (!st.isFile()) throw new Denied(`${j.what}: its partial file is not a regular file; not writing through it`)
      if (st.nlink > 1) throw new Denied(`${j.what}: its partial file has other names (a hard link); not writing through it`)
      assertFdInside(fd, j.root, j.what)
    } catch (err) {
      closeSync(fd)
      return { error: ioError(err) }
    }
    try {
      // Only a partial left by an earlier attempt holds bytes to cut: on ext4, a truncate to zero marks the file to be
      // flushed at its close (auto_da_alloc), 45-90 µs of kernel time a file measured here, which rsync's receiver never pays.
      if (st.size > 0) ftruncateSync(fd, 0)
      let at = 0
      while (at < j.length) at += writeSync(fd, bytes, j.offset + at, j.length - at, at)
      if (j.mode !== undefined) fchmodSync(fd, j.mode)
      // Half a millisecond more, as the file writer does: the floor of the nanosecond mtime is then the source's millisecond.
      if (j.mtime !== undefined) futimesSync(fd, new Date(), (j.mtime + 0.5) / 1000)
      return { fd }
    } catch (err) {
      discardPartials([{ fd, partial: j.partial }])
      return { error: ioError(err) }
    }
  })
}

/** A partial written (and synced) to rename onto its target; `dir` is the real directory both are in. */
export interface RenameJob { fd: number, dir: string, partial: string, target: string, what: string }

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
      const mine = fstatSync(o.fd, { bigint: true })
      const named = lstatSync(o.partial, { bigint: true })
      if (!named.isFile() || named.dev !== mine.dev || named.ino !== mine.ino) throw new Denied(`${o.what}: its partial file was replaced while it was written; not committing`)
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
