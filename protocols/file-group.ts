import { fsync, lstatSync, realpathSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { InvalidArgumentError, IsADirectoryError, NotFoundError, PermissionDeniedError, SourceChangedError, toStaccatoError } from '../mesh/index.ts'
import type { StaccatoError } from '../mesh/index.ts'
import type { ObjectVersion, PutFilesOptions, StatResult, WholeFile, WholeRead } from './contract.ts'
import { fsError } from './fs-errors.ts'
import { syncFileSystems as syncPaths } from './syncfs.ts'
import { discardPartials } from './group-io.ts'
import type { IoError, PartialJob } from './group-io.ts'
import { readInThread, renameInThread, writeInThread } from './group-thread.ts'
import { versionOf } from './read-io.ts'
import type { Algorithm, ReadError, ReadJob } from './read-io.ts'
import { checkFreeSpace, partialName, syncDirectoryPath } from './file-partial.ts'
import { checkWriteKey } from './util.ts'
import { decodeSegment, isInside, parseFileUrl, resolveIn } from './volumes.ts'
import type { Volume } from './volumes.ts'

/**
 * Many small files at once, for a tree copy: each a handful of synchronous
 * system calls (a thread-pool round trip costs more than the call itself
 * for a 4 KiB file), in slices so the event loop stays responsive (stat,
 * read) or a group at a time in the group thread (write: group-thread.ts), and one
 * file-system sync for the whole group instead of one fsync per file
 * (about 1 ms each on ext4 here: 1,000 × 4 KiB took 1.07 s with an fsync
 * each, 0.34 s and one syncfs of 73 ms without). The same defences as the file writer and reader (file-partial.ts, file.ts):
 * O_NOFOLLOW, a regular file with one name, inside the volume by its
 * descriptor, commit by identity; nothing at a target name before its bytes
 * are durable.
 */

/**
 * Files handled between two turns of the event loop: about 10 system calls
 * each at a few µs, so a slice holds the loop a few ms.
 */
const SLICE = 64

const turn = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

/** syncfs on each path's file system; where that cannot be done, `otherwise` (an fsync of each file or directory). */
async function syncFileSystems (paths: string[], otherwise: () => Promise<void>): Promise<void> {
  if (!await syncPaths(paths)) await otherwise()
}

const fsyncP = promisify(fsync)

function confine (root: string, real: string, what: string): void {
  if (!isInside(root, real)) throw new PermissionDeniedError(`${what}: resolves outside its volume (a symbolic link leaves it)`)
}

/**
 * An error built to sit in a result's slot, never thrown: without a stack
 * trace, whose capture was most of the cost of a first copy's quick check
 * (every destination file missing: ~15 µs of 30 a file).
 */
function slotError (make: () => StaccatoError): StaccatoError {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return make()
  } finally {
    Error.stackTraceLimit = limit
  }
}

/** A system call's error by its errno, with `what` (a volume path) in the message; a named error as it is. */
function errorOf (err: unknown, what: string): StaccatoError {
  return typeof (err as NodeJS.ErrnoException).syscall === 'string' ? fsError(err, what) : toStaccatoError(err)
}

/**
 * Where a volume path really is, for reads: the parent directory's real path
 * once per directory (realpath(3) lstats every component: a dozen system
 * calls a file otherwise), then the name in it. Only a name that is itself a
 * symbolic link is resolved whole; the caller opens with O_NOFOLLOW and
 * checks the descriptor, so a directory swapped for a link meanwhile is
 * still caught.
 */
function resolver (volumes: readonly Volume[]): (url: URL) => { root: string, path: string, what: string } {
  const roots = new Map<string, string>()
  /** A directory's real path, or why it has none (missing: every file of a first copy), found once per call. */
  const dirs = new Map<string, string | { failed: unknown }>()
  const parse = fileUrlParser()
  return url => {
    const { volume, relDir, name } = parse(url)
    const what = relDir === '' ? `${volume}/${name}` : `${volume}/${relDir}/${name}`
    let root = roots.get(volume)
    if (root === undefined) {
      const v = volumes.find(v => v.name === volume)
      if (v === undefined) throw new NotFoundError(`no volume '${volume}' on this agent`)
      root = realpathSync.native(v.root)
      roots.set(volume, root)
    }
    const dirKey = `${volume}/${relDir}`
    let dir = dirs.get(dirKey)
    if (dir === undefined) {
      try {
        dir = realpathSync.native(relDir === '' ? root : join(root, relDir))
      } catch (err) {
        dir = { failed: err }
      }
      dirs.set(dirKey, dir)
    }
    if (typeof dir !== 'string') {
      const failed = dir.failed
      throw slotError(() => fsError(failed, what))
    }
    confine(root, dir, what)
    return { root, path: name === '' ? dir : join(dir, name), what }
  }
}

/**
 * parseFileUrl for many files of a few directories, each directory's part
 * decoded and checked once (a group's or a stat batch's files share their
 * directory; a tree copy lists a directory's files one after another): the
 * volume, the directory inside it ('' at its top) and the name ('' for the
 * volume itself). A URL it cannot split so goes through parseFileUrl whole,
 * and a directory part that fails is not kept, so each file gets its own error.
 */
function fileUrlParser (): (url: URL) => { volume: string, relDir: string, name: string } {
  let last: { dirPart: string, volume: string, relDir: string } | undefined
  const whole = (url: URL): { volume: string, relDir: string, name: string } => {
    const { volume, relPath } = parseFileUrl(url)
    const slash = relPath.lastIndexOf('/')
    return { volume, relDir: slash < 0 ? '' : relPath.slice(0, slash), name: relPath.slice(slash + 1) }
  }
  return url => {
    if (url.protocol !== 'file:' || (url.host !== '' && url.host !== 'localhost')) return whole(url)
    const pathname = url.pathname
    const slash = pathname.lastIndexOf('/')
    const dirPart = pathname.slice(0, slash)
    const raw = pathname.slice(slash + 1)
    if (raw === '') return whole(url)
    if (last?.dirPart !== dirPart) {
      const segments = dirPart.split('/').filter(s => s !== '')
      if (segments.length === 0) return whole(url)
      const decoded = segments.map(r => decodeSegment(r, url.href))
      last = { dirPart, volume: decoded[0], relDir: decoded.slice(1).join('/') }
    }
    return { volume: last.volume, relDir: last.relDir, name: decodeSegment(raw, url.href) }
  }
}

/** The name itself a link: followed whole, and confined, as stat() and read() do. */
function followed (root: string, path: string, what: string): string {
  const real = realpathSync.native(path)
  confine(root, real, what)
  return real
}

/** The stat of each URL (a file), or its error; as the plug-in's stat(). */
export async function statFiles (volumes: readonly Volume[], urls: URL[]): Promise<Array<StatResult | StaccatoError>> {
  const resolve = resolver(volumes)
  const out: Array<StatResult | StaccatoError> = []
  for (let i = 0; i < urls.length; i++) {
    if (i > 0 && i % SLICE === 0) await turn()
    let what = urls[i].href
    try {
      const r = resolve(urls[i])
      what = r.what
      // Not there (a first copy): no exception to build and throw per file.
      let st = lstatSync(r.path, { bigint: true, throwIfNoEntry: false })
      if (st === undefined) { out.push(slotError(() => new NotFoundError(`${what}: not found`))); continue }
      if (st.isSymbolicLink()) st = statSync(followed(r.root, r.path, what), { bigint: true })
      if (st.isDirectory()) throw new IsADirectoryError(`${what}: is a directory`)
      if (!st.isFile()) throw new InvalidArgumentError(`${what}: not a regular file`)
      out.push(versionOf(st))
    } catch (err) {
      out.push(errorOf(err, what))
    }
  }
  return out
}

/** A read thread's answer for one file as the plug-in's errors: what readFiles gives. */
function readErrorOf (e: ReadError, what: string): StaccatoError {
  if ('changed' in e) return slotError(() => new SourceChangedError(e.changed))
  if ('directory' in e) return new IsADirectoryError(e.directory)
  if ('notFile' in e) return new InvalidArgumentError(e.notFile)
  if ('denied' in e) return new PermissionDeniedError(e.denied)
  return fsError(Object.assign(new Error(e.errno.message), e.errno), what)
}

/**
 * Each file read whole, checked as read() checks it (inside the volume,
 * regular, the expected version, unchanged while read), and hashed with
 * `algorithm`: its directory resolved and confined here, its own system
 * calls and hash in the read thread (read-io.ts), SLICE files a call. The
 * files' bytes are views of one buffer per call.
 */
export async function readWhole (volumes: readonly Volume[], files: Array<{ url: URL, expect?: ObjectVersion }>, algorithm?: Algorithm): Promise<WholeRead[]> {
  const resolve = resolver(volumes)
  const out: WholeRead[] = []
  for (let from = 0; from < files.length; from += SLICE) {
    const these = files.slice(from, from + SLICE)
    const jobs: ReadJob[] = []
    const slots: Array<WholeRead | { job: number, what: string }> = these.map(({ url, expect }) => {
      try {
        const r = resolve(url)
        jobs.push({ path: r.path, root: r.root, what: r.what, ...(expect === undefined ? {} : { expect: { size: expect.size, mtime: expect.mtime, ...(expect.etag == null ? {} : { etag: expect.etag }) } }) })
        return { job: jobs.length - 1, what: r.what }
      } catch (err) {
        return { error: errorOf(err, url.href) }
      }
    })
    const read = jobs.length === 0 ? { bytes: new Uint8Array(0), out: [] } : await readInThread(jobs, algorithm)
    const bytes = Buffer.from(read.bytes.buffer, read.bytes.byteOffset, read.bytes.byteLength)
    for (const s of slots) {
      if (!('job' in s)) { out.push(s); continue }
      const r = read.out[s.job]
      if ('error' in r) { out.push({ error: readErrorOf(r.error, s.what) }); continue }
      const { offset, size, mtime, etag, real, digest } = r
      out.push({ data: bytes.subarray(offset, offset + size), version: { size, mtime, etag }, real, ...(digest === undefined ? {} : { digest }) })
    }
  }
  return out
}

interface Open { i: number, fd: number, dev: bigint, ino: bigint, dir: string, partial: string, target: string, what: string }

/**
 * Writes each file whole to its partial, makes the group durable with one
 * file-system sync, renames each partial onto its target (by identity), and
 * syncs again so the renames are durable before this returns, unless the
 * caller defers that sync: then the next call's data sync makes them durable
 * too (`syncDirectories`), one sync per group instead of two. A file that
 * fails leaves no partial and does not stop the others: its error is in its
 * slot of the result.
 */
export async function putWhole (volumes: readonly Volume[], files: WholeFile[], opts: PutFilesOptions): Promise<Array<StaccatoError | undefined>> {
  const { key, signal } = opts
  checkWriteKey(key)
  const out: Array<StaccatoError | undefined> = files.map(() => undefined)
  // Parents resolved (and created) once per directory, as a write resolves them: real, inside the volume.
  const parents = new Map<string, Promise<{ dir: string, root: string }>>()
  const resolved: Array<{ target: string, root: string, what: string } | undefined> = []
  const parse = fileUrlParser()
  for (let i = 0; i < files.length; i++) {
    try {
      const { volume, relDir, name } = parse(files[i].url)
      const relPath = relDir === '' ? name : `${relDir}/${name}`
      const parentKey = `${volume}/${relDir}`
      let parent = parents.get(parentKey)
      if (parent === undefined) {
        parent = resolveIn(volumes, volume, relPath, { forWrite: true }).then(r => ({ dir: dirname(r.path), root: r.root }))
        parents.set(parentKey, parent)
      }
      const { dir, root } = await parent
      resolved.push({ target: join(dir, name), root, what: `${volume}/${relPath}` })
    } catch (err) {
      out[i] = errorOf(err, files[i].url.href)
      resolved.push(undefined)
    }
  }
  const dirs = new Set<string>()
  for (const r of resolved) if (r !== undefined) dirs.add(dirname(r.target))
  const firstDir = dirs.values().next().value
  if (firstDir !== undefined) await checkFreeSpace(firstDir, files.reduce((n, f) => n + f.data.byteLength, 0), 'a group of files')
  // The group's bytes in one buffer, handed to the thread whole.
  const jobs: Array<PartialJob & { i: number, dir: string, target: string }> = []
  let total = 0
  for (let i = 0; i < files.length; i++) if (resolved[i] !== undefined) total += files[i].data.byteLength
  const bytes = new Uint8Array(total)
  for (let i = 0, at = 0; i < files.length; i++) {
    const r = resolved[i]
    if (r === undefined) continue
    const f = files[i]
    bytes.set(f.data, at)
    const dir = dirname(r.target)
    jobs.push({ i, dir, target: r.target, partial: join(dir, partialName(basename(r.target), key)), root: r.root, what: r.what, offset: at, length: f.data.byteLength, mode: f.mode, mtime: f.mtime })
    at += f.data.byteLength
  }
  const written = jobs.length === 0 ? [] : await writeInThread(jobs.map(({ partial, root, what, offset, length, mode, mtime }) => ({ partial, root, what, offset, length, mode, mtime })), bytes)
  let open: Open[] = []
  for (let k = 0; k < jobs.length; k++) {
    const w = written[k]
    const j = jobs[k]
    if ('error' in w) out[j.i] = fromIo(w.error, j.what)
    else open.push({ i: j.i, fd: w.fd, dev: w.dev, ino: w.ino, dir: j.dir, partial: j.partial, target: j.target, what: j.what })
  }
  try {
    // Only now: the caller's earlier renames may still be under way while this group's partials were written.
    const later = opts.beforeSync === undefined ? [] : await opts.beforeSync()
    const earlier = earlierDirectories(volumes, [...(opts.syncDirectories ?? []), ...later])
    signal?.throwIfAborted()
    if (open.length === 0) {
      if (earlier.length > 0) await syncFileSystems(oneDirPerDevice(new Set(earlier)), async () => { for (const d of earlier) await syncDirectoryPath(d) })
      return out
    }
    await syncFileSystems(oneDirPerDevice(new Set([...dirs, ...earlier])), async () => {
      await Promise.all(open.map(async o => { await fsyncP(o.fd) }))
      for (const d of earlier) await syncDirectoryPath(d)
    })
    signal?.throwIfAborted()
    const renames = await renameInThread(open.map(({ fd, dev, ino, dir, partial, target, what }) => ({ fd, dev, ino, dir, partial, target, what })))
    const renamedIn = new Set<string>()
    for (let k = 0; k < open.length; k++) {
      const err = renames[k]
      if (err !== undefined) out[open[k].i] = fromIo(err, open[k].what)
      else renamedIn.add(open[k].dir)
    }
    open = []
    // The renames are durable before the caller records the files as done, unless it makes them durable itself later.
    if (renamedIn.size > 0 && opts.deferRenameSync !== true) await syncFileSystems(oneDirPerDevice(renamedIn), async () => { for (const d of renamedIn) await syncDirectoryPath(d) })
    return out
  } finally {
    // Stopped midway (an abort, a failed sync): what was opened and not renamed goes.
    discardPartials(open)
    for (const o of open) if (out[o.i] === undefined) out[o.i] = new InvalidArgumentError(`${o.what}: not written (stopped)`)
  }
}

/** A failure the thread reported, as the named error a write would give. */
function fromIo (e: IoError, what: string): StaccatoError {
  if ('denied' in e) return new PermissionDeniedError(e.denied)
  return errorOf(Object.assign(new Error(e.errno.message), e.errno), what)
}

/**
 * Where an earlier call renamed files, on the host. Not resolved through
 * realpath: nothing is written through these paths, they only name what to
 * sync; that call confined its files' directories when it wrote them.
 */
function earlierDirectories (volumes: readonly Volume[], urls: URL[]): string[] {
  return urls.map(url => {
    const { volume, relPath } = parseFileUrl(url)
    const v = volumes.find(v => v.name === volume)
    if (v === undefined) throw new NotFoundError(`no volume '${volume}' on this agent`)
    return join(v.root, relPath)
  })
}

/** syncfs works per file system: one directory of each device the group wrote to (a volume may hold mounts). */
function oneDirPerDevice (dirs: Set<string>): string[] {
  const byDev = new Map<number, string>()
  for (const d of dirs) {
    try {
      const dev = statSync(d).dev
      if (!byDev.has(dev)) byDev.set(dev, d)
    } catch {
      // A directory gone since its files were renamed into it: nothing of it to sync.
    }
  }
  return [...byDev.values()]
}
