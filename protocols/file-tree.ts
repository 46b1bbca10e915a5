import { lstatSync, readlinkSync } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { lstat, mkdir, opendir, readlink, rename, rmdir, symlink, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { InvalidArgumentError, IsADirectoryError } from '../mesh/index.ts'
import type { TreeEntry } from './contract.ts'
import { isPartialName, partialName, syncDirectoryPath } from './file-partial.ts'
import { fsError } from './fs-errors.ts'

/** readdir hands out this many entries at a time: a directory of 100,000 entries never sits in memory whole. */
const DIR_BUFFER = 256

/**
 * Every entry under `dir` (a real directory path), depth first, a directory
 * before what it holds. Symbolic links are not followed and special files
 * (sockets, FIFOs, devices) not read: both are listed as skipped with the
 * reason. One directory handle is open per level of depth, and each is read
 * in small batches, so memory does not grow with the size of a directory.
 * Partial files of transfers under way are not part of the tree.
 */
export async function * walkDirectory (dir: string, what: string, signal?: AbortSignal): AsyncGenerator<TreeEntry> {
  const top = await lstat(dir).catch(err => { throw fsError(err, what) })
  if (!top.isDirectory()) throw new InvalidArgumentError(`${what}: not a directory`)
  yield * walk(dir, '', signal)
}

async function * walk (dir: string, prefix: string, signal?: AbortSignal): AsyncGenerator<TreeEntry> {
  const handle = await opendir(dir, { bufferSize: DIR_BUFFER })
  for await (const dirent of handle) {
    signal?.throwIfAborted()
    if (isPartialName(dirent.name)) continue
    const path = prefix === '' ? dirent.name : `${prefix}/${dirent.name}`
    const full = join(dir, dirent.name)
    // An entry removed since readdir is left out: a listing is a snapshot, not a promise.
    // Synchronous: a few µs, where a thread-pool round trip per entry was most of listing a tree of small files
    // (the directory handle hands out DIR_BUFFER entries at a time, so the event loop turns between batches).
    let st: BigIntStats | undefined
    try {
      st = lstatSync(full, { bigint: true, throwIfNoEntry: false })
    } catch {
      continue
    }
    if (st === undefined) continue
    const mtime = Number(st.mtimeNs / 1_000_000n)
    const mode = Number(st.mode & 0o7777n)
    if (st.isDirectory()) {
      yield { path, type: 'directory', size: 0, mtime, mode }
      yield * walk(full, path, signal)
    } else if (st.isFile()) {
      yield { path, type: 'file', size: Number(st.size), mtime, mode }
    } else if (st.isSymbolicLink()) {
      // Its target rides along (a tree that copies links decides by it); never followed here.
      const target = linkTarget(full)
      yield { path, type: 'skipped', size: 0, mtime, mode, reason: 'symbolic link (not followed)', ...(target !== undefined ? { target } : {}) }
    } else {
      yield { path, type: 'skipped', size: 0, mtime, mode, reason: 'special file (socket, FIFO or device)' }
    }
  }
}

/** A link's target, or undefined when it is gone or unreadable since its lstat (it is then skipped as a link). */
function linkTarget (path: string): string | undefined {
  try {
    return readlinkSync(path)
  } catch {
    return undefined
  }
}

/**
 * Makes `path` a symbolic link to `target`, or leaves it when it is one
 * already: false then (or, in a dry run, whether it would make it). A new
 * link is made under a temporary name beside it and renamed over the old
 * entry, so the name never shows nothing or half of something; the directory
 * is synced before it returns, so a link reported made survives a crash. A
 * directory in its place is not replaced.
 */
export async function placeLink (path: string, target: string, what: string, dryRun = false): Promise<boolean> {
  const there = await lstat(path).catch(err => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw fsError(err, what)
  })
  if (there?.isDirectory() === true) throw new IsADirectoryError(`${what}: a directory is where the link should go`)
  if (there?.isSymbolicLink() === true && await readlink(path).catch(() => undefined) === target) return false
  if (dryRun) return true
  const temp = join(dirname(path), partialName(basename(path), `link-${randomBytes(6).toString('hex')}`))
  try {
    await symlink(target, temp)
    await rename(temp, path)
  } catch (err) {
    await unlink(temp).catch(() => {})
    throw fsError(err, what)
  }
  await syncDirectoryPath(dirname(path)).catch(err => { throw fsError(err, what) })
  return true
}

/** Creates a directory (and its parents) inside a volume; one that exists already is fine. True when this call created it. */
export async function makeDirectory (path: string, what: string, mode?: number): Promise<boolean> {
  // The first directory it created, if any: the last one it creates is `path` itself.
  const first = await mkdir(path, { recursive: true, mode }).catch(err => { throw fsError(err, what) })
  const st = await lstat(path).catch(err => { throw fsError(err, what) })
  if (!st.isDirectory()) throw new InvalidArgumentError(`${what}: exists and is not a directory`)
  return first !== undefined
}

/** Removes a file, a link (not its target) or an empty directory; false for a directory that is not empty. */
export async function removeEntry (path: string, what: string): Promise<boolean> {
  const st = await lstat(path).catch(err => { throw fsError(err, what) })
  try {
    if (st.isDirectory()) await rmdir(path)
    else await unlink(path)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false
    throw fsError(err, what)
  }
}
