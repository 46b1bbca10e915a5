import {
  ChecksumMismatchError, InternalError, IsADirectoryError, NotFoundError, ProtocolError, SourceChangedError, TREE_BATCH, TREE_READ_FILES, UnsupportedError, toStaccatoError
} from '../../mesh/index.ts'
import type { ControlParams, ErrorInfo, FileCounts, Job, MeshNode, StaccatoError, TreeEntry } from '../../mesh/index.ts'
import type { ObjectVersion, ProtocolPlugin, Writer } from '../../protocols/index.ts'
import type { Resolved } from '../resolve.ts'
import type { Journal, JournalEntry, TreeFileCheckpoint } from '../journal.ts'
import { entryForJob } from '../journal.ts'
import type { CopyDeps, TransferJournal } from '../copy/copy.ts'
import { checksumModeOf } from '../copy/copy.ts'
import { digestOf, newHasher } from '../copy/checksum.ts'
import type { Hasher } from '../copy/checksum.ts'
import { DurableSink } from '../copy/durable-sink.ts'
import { throttled } from '../copy/stages.ts'
import type { FileRun, ReadHandler } from './client.ts'
import type { TreeSource } from './source.ts'
import { DEFAULT_TREE_STREAMS, DEFAULT_TREE_SYNC, FINISHED_JOURNAL_BYTES, LARGE_BATCH_BYTES, READ_REQUEST_BYTES, carriedWhole, finishedAlready, groupFull, largeLane, linkDecision, requestBytes, splitLanes, syncDecision } from './policy.ts'
import { PartFiles } from './parts.ts'
import type { Lane } from './parts.ts'
import { deleteExtra } from './mirror.ts'
import { GroupWriter } from './groups.ts'
import type { GroupFile } from './groups.ts'

export type { FileCounts }

export interface TreeResult {
  files: FileCounts
  bytesTotal: number
  bytesDone: number
  /** Entries a mirror removed from the destination. */
  deleted?: number
  /** The first file that failed, with its path: the tree failed. */
  firstError?: ErrorInfo
}

/** The transfer's entry, and the tree's finished files beside it. */
export type TreeJournal = TransferJournal & Pick<Journal, 'putTreeFiles' | 'treeFilesDone' | 'hasTreeFiles'>

export type TreeCopyDeps = Omit<CopyDeps, 'report' | 'progress' | 'journal'> & {
  node: MeshNode
  journal: TreeJournal
  progress: (p: { transferId: string, attempt: number, bytesDone: number, bytesTotal: number, files: FileCounts }) => void
  /** Sends a batch of files as they ended to the coordinator (for its per-file listing). */
  treeFiles: (p: ControlParams<'treeFiles'>) => Promise<void>
  /** Large files carried at once, each on its own read batch (DEFAULT_TREE_STREAMS when absent). */
  treeStreams?: number
}

type FileRow = ControlParams<'treeFiles'>['files'][number]

/** Rows sent to the coordinator at once: the control method's bound. */
const ROWS_PER_CALL = 256

/** Files of a batch whose partial is opened ahead of their bytes: a few system calls each, overlapped. */
const OPEN_AHEAD = 16

/** Files whose commit (fsync, rename, directory fsync) runs while the next ones arrive. */
const COMMITS_IN_FLIGHT = 32

/** Bytes of one read batch at most, so a batch of large files does not wait for the last of them to be listed. */
const BATCH_BYTES = 64 * 1024 * 1024

interface Pending {
  entry: TreeEntry
  offset: number
  /** Its destination's URL, built once for its stat and kept for its write (a URL costs µs to build). */
  url?: URL
  writer?: Writer
  hasher?: Hasher
  opening?: Promise<Writer>
  checkpoint?: TreeFileCheckpoint
}

/** The counts a dry run or a mirror adds to a tree's, at zero: present in its reports even when nothing is to be done. */
function planCounts (dryRun: boolean, mirror: boolean): Partial<FileCounts> {
  if (dryRun) return mirror ? { wouldCopy: 0, wouldDelete: 0 } : { wouldCopy: 0 }
  return mirror ? { deleted: 0 } : {}
}

/** Counts a row of a dry run's plan or of a mirror's removals (copied, skipped and failed are counted where they happen). */
function countPlanned (files: FileCounts, state: FileRow['state']): void {
  if (state === 'would-copy') files.wouldCopy = (files.wouldCopy ?? 0) + 1
  else if (state === 'would-delete') files.wouldDelete = (files.wouldDelete ?? 0) + 1
  else if (state === 'deleted') files.deleted = (files.deleted ?? 0) + 1
}

/** What every step of one tree copy shares. */
interface Ctx {
  deps: TreeCopyDeps
  job: Job
  source: TreeSource
  dst: Resolved
  algorithm: 'sha256' | 'blake3' | undefined
  entry: JournalEntry
  result: TreeResult
  urlOf: (path: string) => URL
  failFile: (path: string, err: StaccatoError) => void
  progress: (force?: boolean) => void
  /** A file ended (done, skipped or failed): queued for the coordinator's listing. */
  row: (r: FileRow) => Promise<void>
  /** Small files' groups, where the plug-in writes many at once (putFiles). */
  groups: GroupWriter | undefined
  signal: AbortSignal
  /** The files being written, journaled in the tree's entry: one per lane. */
  parts: PartFiles
  /** The lanes large files are carried on at once; small files' batches use the first. */
  lanes: Lane[]
}

/**
 * One tree: the holder lists it (selected by the globs), this agent decides
 * per file by the sync level against what it holds, and pulls the files to
 * copy in batches over one stream each. Each file goes to a partial beside
 * its target and is renamed into place once its digest matches the holder's;
 * mode and mtime are kept, so a later run's quick check sees it unchanged.
 * The journal holds the file being written (its durable offset and prefix
 * digest) and, beside it, every file finished durably (journaled a group at
 * a time, once its renames are synced): after a crash the next attempt skips
 * the finished files whatever the sync level, finds others in place by the
 * sync check, and resumes the partial one from its offset.
 */
export async function copyTree (deps: TreeCopyDeps, job: Job, source: TreeSource, dst: Resolved, signal: AbortSignal): Promise<TreeResult> {
  const { plugin } = dst
  if (plugin.makeDirectory === undefined) throw new UnsupportedError(`destination: the ${plugin.scheme} plug-in cannot create directories, so it cannot receive a tree`)
  const makeDirectory = plugin.makeDirectory.bind(plugin)
  const dryRun = job.tree?.dryRun === true
  const mirror = job.tree?.deleteExtra === true
  // Made by this attempt: empty then, so no destination file is stat'ed (a first copy's ~10,000 lstats of missing files).
  // A file another writer puts in it meanwhile is replaced, as it would be had it appeared just after its stat.
  const fresh = !dryRun && await makeDirectory(dst.url, { signal })
  const sync = job.tree?.sync ?? DEFAULT_TREE_SYNC
  // overwrite never is sync exists (the coordinator set it): a file kept because it is there, changed or not.
  const keepReason = job.overwrite === 'never' ? 'exists at the destination (overwrite never)' : `unchanged (sync ${sync})`
  const mode = checksumModeOf(job)
  const algorithm = mode === 'none' ? undefined : mode
  const result: TreeResult = { files: { total: 0, done: 0, skipped: 0, failed: 0, ...planCounts(dryRun, mirror) }, bytesTotal: 0, bytesDone: 0 }
  const entry: JournalEntry = await deps.journal.get(job.transferId) ?? entryForJob(job)
  entry.attempt = job.attempt
  const parts = new PartFiles(entry, async e => { await deps.journal.put(e) })
  const lanes: Lane[] = Array.from({ length: Math.max(1, deps.treeStreams ?? DEFAULT_TREE_STREAMS) }, () => ({}))
  // Looked up only when an attempt before this one finished files: a first attempt pays nothing per file.
  const finishedBefore = !dryRun && !fresh && await deps.journal.hasTreeFiles(job.transferId)
    ? async (paths: string[]) => await deps.journal.treeFilesDone(job.transferId, paths)
    : undefined
  const urlOf = (path: string): URL => new URL(dst.url.href + path.split('/').map(encodeURIComponent).join('/'))
  let lastProgress = deps.clock.now()
  const progress = (force = false): void => {
    if (!force && deps.clock.now() - lastProgress < deps.progressEveryMs) return
    lastProgress = deps.clock.now()
    deps.progress({ transferId: job.transferId, attempt: job.attempt, bytesDone: result.bytesDone, bytesTotal: result.bytesTotal, files: { ...result.files } })
  }
  let rows: FileRow[] = []
  /** The call under way: one at a time, beside the copy (a round trip per 256 files was most of a no-op re-sync). */
  let sending: Promise<void> = Promise.resolve()
  const send = async (all: FileRow[]): Promise<void> => {
    // In calls of at most the method's bound: failures of a batch queue up to a batch of rows at once.
    for (let i = 0; i < all.length; i += ROWS_PER_CALL) {
      const files = all.slice(i, i + ROWS_PER_CALL)
      // The listing is for people; the copy goes on without it while the coordinator is away.
      await deps.treeFiles({ transferId: job.transferId, attempt: job.attempt, files }).catch(err => {
        deps.log('could not send a batch of tree files to the coordinator', { transferId: job.transferId, files: files.length, error: String(err) }, 'warn')
      })
    }
  }
  const sendRows = async (): Promise<void> => {
    const all = rows
    rows = []
    if (all.length === 0) return
    const before = sending
    sending = before.then(async () => { await send(all) })
    // Waits for the call before this one only: at most two calls' rows in memory, and the copy goes on beside the last.
    await before
  }
  /** A row queued; the call that sends them when there are enough (awaited by the caller only then: a no-op queues 10,000). */
  const queueRow = (r: FileRow): Promise<void> | undefined => {
    rows.push(r)
    return rows.length >= ROWS_PER_CALL ? sendRows() : undefined
  }
  const row = async (r: FileRow): Promise<void> => {
    countPlanned(result.files, r.state)
    await queueRow(r)
  }
  const failFile = (path: string, err: StaccatoError): void => {
    rows.push({ path, state: 'failed', size: 0, error: err.toJSON() })
    result.files.failed++
    deps.log('tree file failed', { transferId: job.transferId, path, code: err.code, error: err.message }, 'warn')
    result.firstError ??= { code: err.code, message: `${path}: ${err.message}`, retryable: err.retryable }
  }

  const putFiles = plugin.putFiles?.bind(plugin)
  // The write thread starts beside the listing, not in the first group's way; a no-op never uses it, and costs it once.
  if (putFiles !== undefined && !dryRun) plugin.warmUp?.('write')
  const groups = putFiles === undefined
    ? undefined
    : new GroupWriter({
      putFiles,
      key: job.transferId,
      signal,
      journal: async files => { await deps.journal.putTreeFiles(job.transferId, files) },
      failed: failFile,
      done: async e => {
        result.files.done++
        await row({ path: e.path, state: 'done', size: e.size })
        progress()
      }
    })
  const ctx: Ctx = { deps, job, source, dst, algorithm, entry, result, urlOf, failFile, progress, row, groups, signal, parts, lanes }
  let batch: Pending[] = []
  let batchBytes = 0
  /** What the batch's read request holds (requestBytes): under the frame limit whatever its files' names. */
  let batchRequest = 0
  /** Large files, batched apart from the small ones (largeLane). */
  let large: Pending[] = []
  let largeBytes = 0
  let largeRequest = 0
  let toCompare: TreeEntry[] = []
  const flush = async (): Promise<void> => {
    const files = batch
    batch = []
    batchBytes = 0
    batchRequest = 0
    await start([files])
  }
  const flushLarge = async (): Promise<void> => {
    const files = large
    large = []
    largeBytes = 0
    largeRequest = 0
    // Pulled on several lanes at once, each its own read batch and data connection, each journaling its own partial file.
    await start(splitLanes(files.map(f => f.entry.size - f.offset), lanes.length).map(lane => lane.map(i => files[i])))
  }
  const start = async (split: Pending[][]): Promise<void> => {
    if (split.every(files => files.length === 0)) return
    // The directories listed so far exist before any file is written into them.
    await dirsMade
    // A batch is received once the one before has all its bytes (on every lane): that one's last group is then written
    // (and synced) while this one comes. At most two batches pulled at once, and one receiving (a partial file per lane).
    await receiving
    await older
    let received = (): void => {}
    receiving = new Promise<void>(resolve => { received = resolve })
    older = pulling
    let left = split.length
    const pulls = split.map(async (files, i) => {
      let once = false
      await pull(ctx, files, 0, () => { if (!once && (once = true) && --left === 0) received() }, lanes[i])
    })
    // Every lane ends (or fails) before the batch does: a lane that fails leaves the others to finish their files,
    // which are then journaled finished. Failed files queue rows without sending them: sent at every batch's end.
    pulling = Promise.allSettled(pulls).then(async settled => {
      const failed = settled.find(r => r.status === 'rejected')
      if (failed !== undefined) throw failed.reason
      await sendRows()
    })
    pulling.catch(() => {})
  }
  let pulling: Promise<void> | undefined
  let older: Promise<void> | undefined
  let receiving: Promise<void> | undefined
  /**
   * Directories are made one after another in the listing's order (a parent before what it holds, each with its own
   * mode), beside the listing rather than in its way: each is a few thread-pool round trips, most of them waits.
   */
  let dirsMade: Promise<void> = Promise.resolve()
  let dirsPending = 0
  const makeDir = async (path: string, mode: number): Promise<void> => {
    dirsPending++
    dirsMade = dirsMade.then(async () => { await makeDirectory(urlOf(path), { signal, mode }) }).finally(() => { dirsPending-- })
    dirsMade.catch(() => {})
    if (dirsPending >= DIRS_AHEAD) await dirsMade
  }

  // A mirror needs every path the source listed once the copy is done: one string per entry, the price of deleteExtra.
  const listed = new Set<string>()
  let copied = false
  try {
    await listAndCopy()
    await older
    await pulling
    copied = true
  } finally {
    // Whatever ended the listing, the batches being pulled finish (or fail) before the attempt ends.
    await Promise.allSettled([older, pulling, dirsMade])
    // A failed attempt still makes the groups already at their names durable and journals them, so the next one
    // does not send them again (a crash is what may leave them unjournaled); its own error is the one reported.
    if (!copied) await groups?.finish().catch(() => {})
  }
  await groups?.finish()
  // Only after every file is in place: a failed copy removes nothing.
  if (mirror && result.files.failed === 0) {
    result.deleted = await deleteExtra({ plugin, dir: dst.url, urlOf, filter: job.tree ?? {}, inSource: p => listed.has(p), dryRun, row, signal })
  }
  await sendRows()
  await sending
  progress(true)
  return result

  async function listAndCopy (): Promise<void> {
    for await (const stats of statAhead(source.list(job.tree ?? {}, signal), fresh ? undefined : plugin, urlOf, finishedBefore, signal)) {
      signal.throwIfAborted()
      for (const s of stats) {
        const waiting = decide(s)
        if (waiting !== undefined) await waiting
      }
    }
    await dirsMade
    await compare()
    await flush()
    await flushLarge()
  }

  /**
   * One entry of the listing, with its destination's stat. Synchronous where it can be (an unchanged file of a
   * no-op: a row queued, nothing awaited); the promise it returns, when it does, is awaited before the next entry.
   */
  function decide (s: Stated): Promise<void> | undefined {
    const { e } = s
    if (mirror) listed.add(e.path)
    if (e.type === 'directory') {
      // Owner-writable whatever the source's mode: a read-only directory could not receive its own files.
      return dryRun ? undefined : makeDir(e.path, e.mode | 0o700)
    }
    result.files.total++
    if (e.type === 'skipped') {
      result.files.skipped++
      return queueRow({ path: e.path, state: 'skipped', size: 0, reason: e.reason })
    }
    if (e.type === 'link') return placeLink(e)
    const { there, finished } = s
    if (there instanceof Promise || finished instanceof Promise) {
      return (async () => {
        const stat = there instanceof Promise ? await there.catch((err: unknown) => toStaccatoError(err)) : there
        await decideFile(e, stat, await finished, s.url)
      })()
    }
    return decideFile(e, there, finished, s.url)
  }

  function decideFile (e: TreeEntry, stated: ObjectVersion | Error | undefined, finished: ObjectVersion | undefined, url: URL | undefined): Promise<void> | undefined {
    result.bytesTotal += e.size
    const source: ObjectVersion = { size: e.size, mtime: e.mtime }
    let there: ObjectVersion | undefined
    if (stated instanceof Error) {
      const x = toStaccatoError(stated)
      if (x instanceof IsADirectoryError) { failFile(e.path, new IsADirectoryError('a directory is where the file should go')); return }
      if (!(x instanceof NotFoundError)) throw x
    } else {
      there = stated
    }
    if (finishedAlready(finished, source, there)) {
      // Done by an earlier attempt of this transfer: not sent, hashed or compared again.
      parts.forget(e.path)
      result.files.done++
      result.bytesDone += e.size
      const sent = queueRow({ path: e.path, state: 'done', size: e.size })
      progress()
      return sent
    }
    const decision = syncDecision(sync, source, there)
    if (decision === 'compare-checksums') {
      // Compared in batches: one request for the holder's digests of many files, not one round trip each.
      toCompare.push(e)
      return toCompare.length >= TREE_BATCH ? compare() : undefined
    }
    return decision === 'skip' ? skip(e) : decided(e, decision, url)
  }

  /**
   * A symbolic link the holder listed to copy (its target checked to stay
   * inside the tree): made at once, once its directory exists, whatever the
   * sync level — the same link already there is skipped. Not journaled: a
   * next attempt finds it in place.
   */
  async function placeLink (e: TreeEntry): Promise<void> {
    const makeLink = plugin.makeLink?.bind(plugin)
    if (makeLink === undefined || e.target === undefined) {
      failFile(e.path, new UnsupportedError(`the ${plugin.scheme} plug-in cannot make symbolic links`))
      return
    }
    // Checked again here: the holder is a peer, and a link it sends out of the tree would point out of this one.
    if (!linkDecision(e.path, e.target).copy || job.tree?.links !== 'copy') {
      failFile(e.path, new ProtocolError(`the holder sent a link this tree does not copy (to ${JSON.stringify(e.target)})`))
      return
    }
    await dirsMade
    let made: boolean
    try {
      made = await makeLink(urlOf(e.path), e.target, { signal, dryRun })
    } catch (err) {
      const x = toStaccatoError(err)
      // A dry run into a directory not made yet: nothing there, so the link would be made.
      if (dryRun && x instanceof NotFoundError) made = true
      else {
        failFile(e.path, x)
        return
      }
    }
    if (!made) {
      result.files.skipped++
      await row({ path: e.path, state: 'skipped', size: 0, reason: 'unchanged (the same link)' })
    } else if (dryRun) {
      await row({ path: e.path, state: 'would-copy', size: 0 })
    } else {
      result.files.done++
      await row({ path: e.path, state: 'done', size: 0 })
    }
    progress()
  }

  /** Unchanged at the destination: a row, nothing else. */
  function skip (e: TreeEntry): Promise<void> | undefined {
    parts.forget(e.path)
    result.files.skipped++
    const sent = queueRow({ path: e.path, state: 'skipped', size: e.size, reason: keepReason })
    progress()
    return sent
  }

  async function compare (): Promise<void> {
    const list = toCompare
    toCompare = []
    if (list.length === 0) return
    const same = await sameDigests(ctx, list, algorithm ?? 'sha256')
    for (const e of list) await decided(e, same.has(e.path) ? 'skip' : 'copy')
  }

  async function decided (e: TreeEntry, decision: 'copy' | 'skip', url?: URL): Promise<void> {
    if (decision === 'skip') {
      await skip(e)
      return
    }
    if (dryRun) {
      await row({ path: e.path, state: 'would-copy', size: e.size })
      return
    }
    const resume = parts.take(e.path, { size: e.size, mtime: e.mtime })
    const f: Pending = { entry: e, offset: resume?.durableOffset ?? 0, checkpoint: resume, url }
    if (largeLane(e.size)) {
      large.push(f)
      largeBytes += e.size - f.offset
      largeRequest += requestBytes(e.path)
      if (large.length >= TREE_BATCH || largeBytes >= LARGE_BATCH_BYTES || largeRequest >= READ_REQUEST_BYTES) await flushLarge()
      return
    }
    batch.push(f)
    batchBytes += e.size
    batchRequest += requestBytes(e.path)
    // Many small files a request: each request costs a stream and a data connection, whatever it holds (TREE_READ_FILES).
    if (batch.length >= TREE_READ_FILES || batchBytes >= BATCH_BYTES || batchRequest >= READ_REQUEST_BYTES) await flush()
  }
}

/** Directories being made at most, beside the listing (bounded: a tree may hold 100,000 of them and no file). */
const DIRS_AHEAD = 256

/** Files whose destination is stat'ed ahead of the one being decided: each stat is a few system calls, which overlap. */
const STAT_AHEAD = 16

/** Entries of the listing whose destinations are stat'ed in one call, where the plug-in can (statMany). */
const STAT_BATCH = 256

/** An entry and its destination's stat (or why there is none) and finished version: known already, or on their way. */
type Stated = { e: TreeEntry, url?: URL, there?: ObjectVersion | Error | Promise<ObjectVersion>, finished?: ObjectVersion | Promise<ObjectVersion | undefined> }

type FinishedLookup = (paths: string[]) => Promise<Array<ObjectVersion | undefined>>

/**
 * The listing, each file with the stat of its destination started early (no
 * plug-in: a destination known empty, nothing stat'ed), in
 * the listing's order: a batch at a time where the plug-in stats many at once
 * (a few µs a file, against a thread-pool round trip each), otherwise
 * STAT_AHEAD ahead. A stat that fails is the caller's to read: its promise is
 * handled here so that it never rejects unobserved.
 */
async function * statAhead (listing: AsyncIterable<TreeEntry[]>, plugin: ProtocolPlugin | undefined, urlOf: (path: string) => URL, finishedBefore: FinishedLookup | undefined, signal: AbortSignal): AsyncGenerator<Stated[]> {
  if (plugin === undefined) {
    // Nothing at the destination to stat (a directory this attempt made): each file as not there.
    for await (const entries of listing) yield entries.map(e => e.type === 'file' ? { e, url: urlOf(e.path) } : { e })
    return
  }
  const statMany = plugin.statMany?.bind(plugin)
  if (statMany === undefined) {
    const queue: Stated[] = []
    for await (const entries of listing) for (const e of entries) {
      const url = e.type === 'file' ? urlOf(e.path) : undefined
      const there = url !== undefined ? plugin.stat(url, { signal }) : undefined
      there?.catch(() => {})
      const finished = e.type === 'file' && finishedBefore !== undefined ? finishedBefore([e.path]).then(r => r[0]) : undefined
      queue.push({ e, url, there, finished })
      if (queue.length > STAT_AHEAD) yield [queue.shift() as Stated]
    }
    yield queue
    return
  }
  // A batch at a time, its stats settled: the caller reads them without a promise (or a generator step) per entry.
  let batch: TreeEntry[] = []
  const stated = async (): Promise<Stated[]> => {
    const these = batch
    batch = []
    const files = these.filter(e => e.type === 'file')
    const paths = files.map(e => e.path)
    const urls = paths.map(urlOf)
    const [found, done] = files.length === 0 ? [[], []] : await Promise.all([statMany(urls, { signal }), finishedBefore?.(paths) ?? []])
    let i = 0
    return these.map(e => {
      if (e.type !== 'file') return { e }
      const at = i++
      return { e, url: urls[at], there: found[at], finished: done[at] }
    })
  }
  for await (const entries of listing) {
    for (const e of entries) {
      batch.push(e)
      if (batch.length >= STAT_BATCH) yield await stated()
    }
  }
  yield await stated()
}

/**
 * `sync: checksum` for files of the same size, a batch at a time: the holder
 * hashes its files (asked from their ends, so no byte travels), in one
 * request; this agent hashes its own. The paths whose digests agree.
 */
async function sameDigests (ctx: Ctx, entries: TreeEntry[], algorithm: 'sha256' | 'blake3'): Promise<Set<string>> {
  const { source, dst, signal } = ctx
  const theirs = new Map<string, string>()
  await source.read(entries.map(e => ({ path: e.path, offset: e.size, expect: { size: e.size, mtime: e.mtime } })), algorithm, {
    file: async (_run, chunks) => { for await (const _ of chunks) break },
    end: async (path, digest) => { const d = digest[algorithm]; if (d !== undefined) theirs.set(path, d) },
    // Changed or unreadable there: copied, and the copy reports what is wrong.
    error: async () => {}
  }, signal)
  const same = new Set<string>()
  for (const e of entries) {
    const hasher = newHasher(algorithm)
    const want = theirs.get(e.path)
    if (hasher === undefined || want === undefined) continue
    for await (const chunk of dst.plugin.read(ctx.urlOf(e.path), { offset: 0, signal })) hasher.update(chunk)
    if (hasher.digest() === want) same.add(e.path)
  }
  return same
}

/** Times a file that changed while it was read is asked for again, as it is then, before it is reported `source_changed`. */
const CHANGED_RETRIES = 3

/** `received`: called once every byte of the batch has come (its writes may still be under way), or it failed. */
async function pull (ctx: Ctx, files: Pending[], round = 0, received?: () => void, lane: Lane = ctx.lanes[0]): Promise<void> {
  const { deps, source, algorithm, entry, result, failFile, progress, signal } = ctx
  const byPath = new Map(files.map((f, i) => [f.entry.path, { f, i }]))
  const groups = ctx.groups
  const whole = (f: Pending): boolean => groups !== undefined && f.writer === undefined && carriedWhole(f.entry.size, f.offset)
  // A kept partial is read back and hashed before it is trusted; one that does not match starts from zero.
  for (const f of files) if (f.offset > 0) await reopen(ctx, f)
  let opened = 0
  const openAhead = (upTo: number): void => {
    for (; opened < Math.min(upTo, files.length); opened++) {
      const f = files[opened]
      if (f.writer !== undefined || whole(f)) continue
      f.opening = openAt(ctx, f, 0)
      // Awaited when its bytes come, or discarded: never an unhandled rejection meanwhile.
      f.opening.catch(() => {})
    }
  }
  const discard = async (f: Pending): Promise<void> => {
    const w = f.writer ?? await f.opening?.catch(() => undefined)
    await w?.abort({ keepPartial: false }).catch(() => {})
  }
  openAhead(OPEN_AHEAD)
  let current: { f: Pending, sink?: DurableSink, parts?: Uint8Array[], hasher?: Hasher } | undefined
  // Small files received whole, written a group at a time: one group written while the next is received.
  let group: GroupFile[] = []
  let groupBytes = 0
  let writing: Promise<void> = Promise.resolve()
  /** The group handed to the writer before `writing`: two are out at once, one written while the other is synced. */
  let wrote: Promise<void> = Promise.resolve()
  const writeGroup = async (): Promise<void> => {
    const these = group
    group = []
    groupBytes = 0
    await wrote
    if (these.length === 0) return
    // Written after the groups before it, this batch's and the last batch's, in order (GroupWriter).
    wrote = writing
    writing = (groups as GroupWriter).write(these)
    writing.catch(() => {})
  }
  const commits = new Set<Promise<void>>()
  let commitError: unknown
  const again: Pending[] = []
  /** Directories (tree paths ending in '/', '' for the top) where files were renamed into place: each synced once. */
  const renamedIn = new Set<string>()
  /** Files through the writer, renamed: journaled finished once their directories are synced. */
  let committed: Array<{ path: string, version: { size: number, mtime: number } }> = []
  let committedBytes = 0
  /** The journaling of the files renamed so far: one at a time, in the background of the next files' bytes. */
  let journaling: Promise<void> = Promise.resolve()
  const journalCommitted = (): Promise<void> => {
    const dirs = [...renamedIn]
    const files = committed
    renamedIn.clear()
    committed = []
    committedBytes = 0
    journaling = journaling.then(async () => {
      for (const dir of dirs) await ctx.dst.plugin.syncDirectory?.(ctx.urlOf(dir), { signal })
      await deps.journal.putTreeFiles(ctx.job.transferId, files)
    })
    return journaling
  }
  /** A small file received whole (alone or in a pack): checked against the holder's digest, then queued for its group. */
  const wholeFile = async (path: string, f: Pending, data: Uint8Array, theirs: string | undefined): Promise<void> => {
    const ours = algorithm === undefined || theirs === undefined ? undefined : digestOf(algorithm, data)
    if (ours !== theirs) {
      failFile(path, new ChecksumMismatchError(`received bytes hash to ${algorithm ?? ''} ${ours ?? ''}, the holder's to ${theirs ?? ''}`))
      return
    }
    const e = f.entry
    // What the writer's commit checks for a file it writes: every byte of the listed size, no more.
    if (data.byteLength !== e.size) { failFile(path, new InternalError(`${data.byteLength} bytes received, the file is ${e.size}`)); return }
    group.push({ entry: e, file: { url: f.url ?? ctx.urlOf(path), data, mtime: e.mtime > 0 ? e.mtime : undefined, mode: e.mode } })
    groupBytes += data.byteLength
    if (groupFull(group.length, groupBytes)) await writeGroup()
  }
  const handler: ReadHandler = {
      file: async (run: FileRun, chunks) => {
        const at = byPath.get(run.path)
        if (at === undefined) throw new InternalError(`the holder sent ${run.path}, which was not asked for`)
        const { f } = at
        openAhead(at.i + 1 + OPEN_AHEAD)
        const version = { size: f.entry.size, mtime: f.entry.mtime }
        if (whole(f)) {
          // Kept in memory until its digest matched (hashed whole at its end), then written with its group: a file that does not match is never written.
          const parts: Uint8Array[] = []
          current = { f, parts }
          for await (const chunk of throttled(chunks, deps.download, signal)) {
            parts.push(chunk)
            deps.counters.bytesReceived += chunk.byteLength
            result.bytesDone += chunk.byteLength
          }
          progress()
          return
        }
        f.hasher ??= algorithm === undefined ? undefined : newHasher(algorithm)
        f.writer ??= await (f.opening ?? openAt(ctx, f, 0))
        // The sink journals the file's offset into the tree's one entry: one file per lane is part written at a time.
        const journal: Pick<TransferJournal, 'commitOffset'> = {
          commitOffset: async (fileEntry, offset) => {
            // A sync that ends once the lane's next file's bytes flow: that file is the lane's partial one now, and this one is being committed.
            if (lane.latest !== f) return
            await ctx.parts.journal(lane, { path: f.entry.path, version, durableOffset: offset, prefixDigest: fileEntry.prefixDigest })
          }
        }
        const fileEntry: JournalEntry = { ...entry, version, durableOffset: f.offset }
        const hasher = f.hasher
        const sink = new DurableSink({
          writer: f.writer, journal, entry: fileEntry, prefixDigest: () => hasher?.digest(), clock: deps.clock,
          syncEveryBytes: deps.syncEveryBytes, syncEveryMs: deps.syncEveryMs, onJournaled: () => { deps.counters.journalCommits++ },
          // Hashed beside the chunk's write, as a single file's copy does (DurableSink).
          hash: hasher === undefined ? undefined : chunk => { hasher.update(chunk) },
          // The reader's chunks are fresh (a holder reuses its buffers only on the sending side): one write stays in flight.
          writeBehind: true
        })
        current = { f, sink, hasher }
        lane.latest = f
        for await (const chunk of throttled(chunks, deps.download, signal)) {
          await sink.write(chunk)
          deps.counters.bytesReceived += chunk.byteLength
          result.bytesDone += chunk.byteLength
          progress()
        }
        // The sync under way (the file's last bytes, often: a sync starts every syncEveryBytes) is not waited for here
        // but by the commit, beside the next file's bytes: waiting held every file's end up by a sync of up to 16 MiB.
      },
      end: async (path, digest) => {
        const c = current
        current = undefined
        if (c === undefined || c.f.entry.path !== path) throw new InternalError(`the holder ended ${path}, which it had not started`)
        const theirs = algorithm === undefined ? undefined : digest[algorithm]
        if (c.sink === undefined) {
          await wholeFile(path, c.f, Buffer.concat(c.parts ?? []), theirs)
          return
        }
        const ours = c.hasher?.digest()
        if (theirs !== undefined && ours !== theirs) {
          await c.sink.abort(false)
          failFile(path, new ChecksumMismatchError(`received bytes hash to ${algorithm ?? ''} ${ours ?? ''}, the holder's to ${theirs}`))
          return
        }
        // Not held whole (above): written through a sink.
        const sink = c.sink as DurableSink
        // Committed beside the next files: each commit waits on two fsyncs (the file, then its directory),
        // and the file system's journal takes concurrent ones in one commit of its own.
        while (commits.size >= COMMITS_IN_FLIGHT) await Promise.race(commits)
        const done = sink.commit().then(async () => {
          renamedIn.add(path.includes('/') ? path.slice(0, path.lastIndexOf('/') + 1) : '')
          committed.push({ path, version: { size: c.f.entry.size, mtime: c.f.entry.mtime } })
          committedBytes += c.f.entry.size
          // Large files journaled finished as they go, not at the end of a batch that may hold a GiB of them.
          if (committedBytes >= FINISHED_JOURNAL_BYTES) await journalCommitted()
          result.files.done++
          await ctx.row({ path, state: 'done', size: c.f.entry.size })
          await ctx.parts.done(lane, path)
          progress()
        }).catch(err => { commitError ??= err }).finally(() => commits.delete(done))
        commits.add(done)
      },
      error: async (path, err, now) => {
        const at = byPath.get(path)
        if (at === undefined) throw new InternalError(`the holder reported ${path}, which was not asked for`)
        // In place of its end, after its bytes: the file changed while it was read, and what was written of it goes.
        const c = current
        if (c?.f === at.f) {
          current = undefined
          // Its last sync may still run: the sink waits for it before the writer goes.
          await c.sink?.abort(false)
        }
        openAhead(at.i + 1 + OPEN_AHEAD)
        await discard(at.f)
        if (err instanceof SourceChangedError && now !== undefined && round < CHANGED_RETRIES) {
          // Asked again as it is now (bounded): never a mix of two versions, which the holder's version checks refuse.
          deps.log('tree file changed while read; asking again', { transferId: ctx.job.transferId, path, round: round + 1 })
          result.bytesTotal += now.size - at.f.entry.size
          again.push({ entry: { ...at.f.entry, size: now.size, mtime: now.mtime }, offset: 0 })
          return
        }
        failFile(path, err instanceof SourceChangedError && round > 0 ? new SourceChangedError(`changed while it was read, ${round + 1} times; not copied`) : err)
      }
  }
  if (groups !== undefined) {
    /** Many small files in one message: per-group work on this thread, not per-file messages, generators and awaits. */
    handler.files = async (runs, bytes) => {
      const total = runs.reduce((n, r) => n + r.size, 0)
      if (total !== bytes.byteLength) throw new ProtocolError(`tree read: a pack of ${bytes.byteLength} bytes for files of ${total}`)
      if (deps.download !== undefined) await deps.download.take(bytes.byteLength, signal)
      deps.counters.bytesReceived += bytes.byteLength
      result.bytesDone += bytes.byteLength
      let at = 0
      for (const r of runs) {
        const data = bytes.subarray(at, at + r.size)
        at += r.size
        const p = byPath.get(r.path)
        if (p === undefined) throw new InternalError(`the holder sent ${r.path}, which was not asked for`)
        openAhead(p.i + 1 + OPEN_AHEAD)
        const theirs = algorithm === undefined ? undefined : r[algorithm]
        if (whole(p.f)) {
          await wholeFile(r.path, p.f, data, theirs)
          continue
        }
        // Not ours to take whole (a partial kept open for it): through the writer, as if sent alone.
        result.bytesDone -= r.size
        deps.counters.bytesReceived -= r.size
        await handler.file({ path: r.path, size: r.size, mtime: r.mtime, length: r.size }, once(data))
        await handler.end(r.path, { [algorithm ?? 'sha256']: theirs })
      }
      progress()
    }
  }
  try {
    await source.read(files.map(f => ({ path: f.entry.path, offset: f.offset, expect: { size: f.entry.size, mtime: f.entry.mtime } })), algorithm, handler, signal)
    if (again.length === 0) received?.()
    await writeGroup()
    await wrote
    await writing
    await Promise.all(commits)
    if (commitError !== undefined) throw commitError
    await journalCommitted()
    if (again.length > 0) await pull(ctx, again, round + 1, received, lane)
  } catch (err) {
    received?.()
    // A group being written finishes (its files are then in place); the one being gathered was never written.
    await wrote.catch(() => {})
    await writing.catch(() => {})
    await Promise.all(commits)
    // The files already renamed are made durable and journaled, so that the next attempt does not send them again.
    await journalCommitted().catch(() => {})
    // The stream broke inside a file: its partial stays for the next attempt, which resumes it from the journaled offset.
    await current?.sink?.abort(toStaccatoError(err).retryable).catch(() => {})
    for (const f of files) if (f !== current?.f) await discard(f)
    throw err
  }
}

async function * once (data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data
}

async function openAt (ctx: Ctx, f: Pending, offset: number): Promise<Writer> {
  const { entry: e } = f
  // The directory is synced once per batch after its renames (pull), not once per file.
  const deferDirectorySync = ctx.dst.plugin.syncDirectory !== undefined
  return await ctx.dst.plugin.write(ctx.urlOf(e.path), { offset, size: e.size, key: ctx.job.transferId, mtime: e.mtime > 0 ? e.mtime : undefined, mode: e.mode, deferDirectorySync, signal: ctx.signal })
}

/** Resumes a file from the journaled offset when its kept prefix hashes to the journaled digest; otherwise from zero. */
async function reopen (ctx: Ctx, f: Pending): Promise<void> {
  const { deps, job, signal } = ctx
  const cp = f.checkpoint
  const hasher = newHasher(checksumModeOf(job))
  try {
    const writer = await openAt(ctx, f, f.offset)
    if (hasher !== undefined && writer.readPartial !== undefined && cp?.prefixDigest !== undefined) {
      for await (const chunk of writer.readPartial({ signal })) hasher.update(chunk)
      if (hasher.digest() === cp.prefixDigest) {
        deps.log('resuming tree file', { transferId: job.transferId, path: f.entry.path, offset: f.offset })
        f.writer = writer
        f.hasher = hasher
        return
      }
    }
    await writer.abort({ keepPartial: false })
  } catch (err) {
    deps.log('cannot resume tree file; from zero', { transferId: job.transferId, path: f.entry.path, error: String(err) }, 'warn')
  }
  f.offset = 0
}
