import { constants } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { lstat, open, opendir, realpath, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidArgumentError, IsADirectoryError, SourceChangedError } from '../mesh/index.ts'
import type { StaccatoError } from '../mesh/index.ts'
import type { Entry, ObjectVersion, TreeEntry, OpOptions, ProtocolPlugin, PutFilesOptions, ReadOptions, StatResult, WholeFile, WholeRead, WriteAtOptions, WriteOptions, Writer, WriterAt } from './contract.ts'
import { openFileWriter } from './file-writer.ts'
import type { OpenDirect } from './file-direct.ts'
import { openFileWriterAt } from './file-writer-at.ts'
import { isPartialName, syncDirectoryPath } from './file-partial.ts'
import { makeDirectory, placeLink, removeEntry, walkDirectory } from './file-tree.ts'
import { putWhole, readWhole, statFiles } from './file-group.ts'
import { warmThread } from './group-thread.ts'
import { fsError } from './fs-errors.ts'
import { assertVersion, checkOffset, checkRange, checkWriteKey } from './util.ts'
import { assertHandleInside, isInside, parseFileUrl, resolveIn } from './volumes.ts'
import type { Resolved, Volume } from './volumes.ts'

export interface FileOptions {
  volumes: Volume[]
  /**
   * 'auto' (the default): a file written sequentially goes past the page
   * cache (O_DIRECT) where its file system takes it, as it always did where
   * not; 'off': through the page cache. See docs/operators.md.
   */
  directIo?: 'auto' | 'off'
  /** How the O_DIRECT descriptor is opened; tests inject a file system's refusal here. */
  openDirect?: OpenDirect
}

/** Reads hand out buffers of this size: few system calls, and the consumer may keep each one. */
const READ_CHUNK = 1 << 20

function versionOf (st: BigIntStats): ObjectVersion {
  // The inode catches a replace-by-rename; nanosecond mtime catches a rewrite within the same millisecond.
  return {
    size: Number(st.size),
    mtime: Number(st.mtimeNs / 1_000_000n),
    etag: `${st.ino.toString(16)}-${st.size.toString(16)}-${st.mtimeNs.toString(16)}`
  }
}

/** A directory is named apart from other non-files: the caller can then tell the user to name it with a trailing '/'. */
function assertRegular (st: BigIntStats, what: string): void {
  if (st.isDirectory()) throw new IsADirectoryError(`${what}: is a directory`)
  if (!st.isFile()) throw new InvalidArgumentError(`${what}: not a regular file`)
}

/**
 * A file written onto a directory would fail only at the rename, after every
 * byte moved: refuse it when the writer opens. lstat: a symlink at the target
 * is replaced by the rename, not followed.
 */
async function assertNotDirectory (path: string, what: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined)
  if (st?.isDirectory() === true) throw new IsADirectoryError(`${what}: is a directory`)
}

/**
 * file:///<volume>/<path> — files under the volumes an agent exports. Writes
 * go to a partial file beside the target, then fsync and rename: nothing is
 * visible at the target until commit().
 */
export function file (init: FileOptions): ProtocolPlugin {
  const volumes = init.volumes.map(v => ({ ...v }))

  async function resolve (url: URL, forWrite = false): Promise<Resolved> {
    const { volume, relPath } = parseFileUrl(url)
    return await resolveIn(volumes, volume, relPath, { forWrite })
  }

  return {
    scheme: 'file',
    capabilities: { read: true, write: true, resume: true, list: true, checksum: false, writeAt: true },

    async stat (url: URL): Promise<StatResult> {
      const { path, what } = await resolve(url)
      const st = await stat(path, { bigint: true }).catch(err => { throw fsError(err, what) })
      assertRegular(st, what)
      return versionOf(st)
    },

    async * read (url: URL, opts: ReadOptions): AsyncGenerator<Uint8Array> {
      const { path, root, what } = await resolve(url)
      // O_NOFOLLOW: the path is already real, so a symlink here was planted after realpath().
      // O_NONBLOCK: a FIFO swapped in after stat() must not hang the open (no effect on regular files).
      const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(err => { throw fsError(err, what) })
      try {
        await assertHandleInside(fh, root, what)
        const first = await fh.stat({ bigint: true })
        assertRegular(first, what)
        const version = versionOf(first)
        assertVersion(what, opts.expect, version)
        let left = checkRange(url, version.size, opts)
        let position = opts.offset
        // One read stays in flight while the consumer hashes and sends the chunk before it.
        // With reuseBuffers, two buffers take turns: the one read into is never the one the consumer holds
        // (a new 1 MiB buffer per chunk is garbage the GC must collect: an eighth of a sender's CPU in profiles).
        const pool = opts.reuseBuffers === true ? [Buffer.allocUnsafe(READ_CHUNK), Buffer.allocUnsafe(READ_CHUNK)] : undefined
        let turn = 0
        const readAt = (at: number, n: number): Promise<{ buffer: Buffer, bytesRead: number }> => {
          const buffer = pool === undefined ? Buffer.allocUnsafe(n) : pool[turn++ % 2].subarray(0, n)
          const read = fh.read(buffer, 0, n, at).then(r => ({ buffer, bytesRead: r.bytesRead }))
          // A consumer that stops early never awaits it; close() still waits for it.
          read.catch(() => {})
          return read
        }
        let next = left > 0 ? readAt(position, Math.min(READ_CHUNK, left)) : undefined
        while (next !== undefined) {
          opts.signal?.throwIfAborted()
          const { buffer, bytesRead } = await next
          if (bytesRead === 0) throw new SourceChangedError(`${what}: shrank while being read`)
          position += bytesRead
          left -= bytesRead
          next = left > 0 ? readAt(position, Math.min(READ_CHUNK, left)) : undefined
          yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead)
        }
        // Bytes read across a rewrite could be a splice of two versions: refuse them.
        assertVersion(`${what} (while being read)`, version, versionOf(await fh.stat({ bigint: true })))
      } finally {
        await fh.close()
      }
    },

    async write (url: URL, opts: WriteOptions): Promise<Writer> {
      checkOffset(url, opts.offset)
      checkWriteKey(opts.key)
      const { path, root, what } = await resolve(url, true)
      await assertNotDirectory(path, what)
      return await openFileWriter({ target: path, root, what, offset: opts.offset, size: opts.size, key: opts.key, mtime: opts.mtime, mode: opts.mode, deferDirectorySync: opts.deferDirectorySync, signal: opts.signal, directIo: init.directIo, openDirect: init.openDirect })
    },

    /** Writes at any offset (a distribution's pieces), to the same kind of partial file as write(). */
    async openWriterAt (url: URL, opts: WriteAtOptions): Promise<WriterAt> {
      checkWriteKey(opts.key)
      if (!Number.isSafeInteger(opts.size) || opts.size < 0) throw new InvalidArgumentError(`${url.href}: size ${opts.size} is not a non-negative integer`)
      const { path, root, what } = await resolve(url, true)
      await assertNotDirectory(path, what)
      return await openFileWriterAt({ target: path, root, what, key: opts.key, size: opts.size, resume: opts.resume, mtime: opts.mtime, mode: opts.mode, signal: opts.signal, directIo: init.directIo, openDirect: init.openDirect })
    },

    async * walk (url: URL, opts?: OpOptions): AsyncGenerator<TreeEntry> {
      const { path, what } = await resolve(url)
      yield * walkDirectory(path, what, opts?.signal)
    },

    async makeDirectory (url: URL, opts?: OpOptions & { mode?: number }): Promise<boolean> {
      const { volume, relPath } = parseFileUrl(url)
      // The parents are created and checked one by one inside the volume; the last segment here.
      const { path, what } = await resolveIn(volumes, volume, relPath === '' ? '' : relPath, { forWrite: relPath !== '' })
      if (relPath === '') return false
      return await makeDirectory(path, what, opts?.mode)
    },

    async syncDirectory (url: URL, opts?: OpOptions): Promise<void> {
      opts?.signal?.throwIfAborted()
      const { path, what } = await resolve(url)
      await syncDirectoryPath(path).catch(err => { throw fsError(err, what) })
    },

    async statMany (urls: URL[]): Promise<Array<StatResult | StaccatoError>> {
      return await statFiles(volumes, urls)
    },

    async readFiles (files: Array<{ url: URL, expect?: ObjectVersion }>, opts?: { algorithm?: 'sha256' | 'blake3' }): Promise<WholeRead[]> {
      return await readWhole(volumes, files, opts?.algorithm)
    },

    async putFiles (files: WholeFile[], opts: PutFilesOptions): Promise<Array<StaccatoError | undefined>> {
      return await putWhole(volumes, files, opts)
    },

    warmUp (what: 'read' | 'write'): void {
      warmThread(what)
    },

    async makeLink (url: URL, target: string, opts?: OpOptions & { dryRun?: boolean }): Promise<boolean> {
      opts?.signal?.throwIfAborted()
      // Resolved for a write: the parents are real and inside the volume, the last segment is not followed.
      // A dry run creates no parent: a missing one is not_found, and the link would be made.
      const { volume, relPath } = parseFileUrl(url)
      const { path, what } = await resolveIn(volumes, volume, relPath, { forWrite: true, createParents: opts?.dryRun !== true })
      return await placeLink(path, target, what, opts?.dryRun === true)
    },

    async remove (url: URL, opts?: OpOptions): Promise<boolean> {
      opts?.signal?.throwIfAborted()
      // Resolved for a write: the parents are real and inside the volume, the last segment is not followed.
      const { path, what } = await resolve(url, true)
      return await removeEntry(path, what)
    },

    /**
     * The files and directories directly inside a directory; `path` is the
     * entry's name. Partial files, special files and symlinks that leave the
     * volume are not listed.
     */
    async * list (url: URL, opts?: OpOptions): AsyncGenerator<Entry> {
      const { path, root, what } = await resolve(url)
      const dir = await opendir(path).catch(err => { throw fsError(err, what) })
      for await (const dirent of dir) {
        opts?.signal?.throwIfAborted()
        if (isPartialName(dirent.name)) continue
        let full = join(path, dirent.name)
        if (dirent.isSymbolicLink()) {
          // A dangling or unreadable link is left out of the listing, like one that points out of the volume.
          const real = await realpath(full).catch(() => undefined)
          if (real === undefined || !isInside(root, real)) continue
          full = real
        }
        // An entry removed or made unreadable since readdir is left out: a listing is a snapshot, not a promise.
        const st = await stat(full).catch(() => undefined)
        if (st === undefined || !(st.isFile() || st.isDirectory())) continue
        yield { path: dirent.name, size: st.isFile() ? st.size : 0, mtime: Math.floor(st.mtimeMs), type: st.isFile() ? 'file' : 'directory' }
      }
    }
  }
}
