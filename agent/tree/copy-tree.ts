import {
  ChecksumMismatchError, InternalError, IsADirectoryError, NotFoundError, ProtocolError, SourceChangedError, TREE_BATCH, UnsupportedError, toStaccatoError
} from '../../mesh/index.ts'
import type { ControlParams, ErrorInfo, Job, MeshNode, StaccatoError, TreeEntry } from '../../mesh/index.ts'
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
import { DEFAULT_TREE_SYNC, FINISHED_JOURNAL_BYTES, LARGE_BATCH_BYTES, carriedWhole, finishedAlready, groupFull, largeLane, syncDecision } from './policy.ts'
import { deleteExtra } from './mirror.ts'
import { GroupWriter } from './groups.ts'
import type { GroupFile } from './groups.ts'

export interface FileCounts { total: number, done: number, skipped: number, failed: number }

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

interface Pending { entry: TreeEntry, offset: number, writer?: Writer, hasher?: Hasher, opening?: Promise<Writer> }

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
  /** The file whose bytes went to a writer last: the tree's entry journals one partial file, this one. */
  latest?: Pending
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
  if (!dryRun) await makeDirectory(dst.url, { signal })
  const sync = job.tree?.sync ?? DEFAULT_TREE_SYNC
  const mode = checksumModeOf(job)
  const algorithm = mode === 'none' ? undefined : mode
  const result: TreeResult = { files: { total: 0, done: 0, skipped: 0, failed: 0 }, bytesTotal: 0, bytesDone: 0 }
  const entry: JournalEntry = await deps.journal.get(job.transferId) ?? entryForJob(job)
  entry.attempt = job.attempt
  const checkpoint = entry.treeFile
  // Looked up only when an attempt before this one finished files: a first attempt pays nothing per file.
  const finishedBefore = !dryRun && await deps.journal.hasTreeFiles(job.transferId)
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
  const row = async (r: FileRow): Promise<void> => {
    rows.push(r)
    if (rows.length >= ROWS_PER_CALL) await sendRows()
  }
  const failFile = (path: string, err: StaccatoError): void => {
    rows.push({ path, state: 'failed', size: 0, error: err.toJSON() })
    result.files.failed++
    deps.log('tree file failed', { transferId: job.transferId, path, code: err.code, error: err.message }, 'warn')
    result.firstError ??= { code: err.code, message: `${path}: ${err.message}`, retryable: err.retryable }
  }

  const putFiles = plugin.putFiles?.bind(plugin)
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
  const ctx: Ctx = { deps, job, source, dst, algorithm, entry, result, urlOf, failFile, progress, row, groups, signal }
  let batch: Pending[] = []
  let batchBytes = 0
  /** Large files, batched apart from the small ones (largeLane). */
  let large: Pending[] = []
  let largeBytes = 0
  let toCompare: TreeEntry[] = []
  const flush = async (): Promise<void> => {
    const files = batch
    batch = []
    batchBytes = 0
    await start(files)
  }
  const flushLarge = async (): Promise<void> => {
    const files = large
    large = []
    largeBytes = 0
    await start(files)
  }
  const start = async (files: Pending[]): Promise<void> => {
    if (files.length === 0) return
    // A batch is received once the one before has all its bytes: that one's last group is then written (and synced)
    // while this one comes. At most two batches pulled at once, and one receiving (the journal holds one partial file).
    await receiving
    await older
    let received = (): void => {}
    receiving = new Promise<void>(resolve => { received = resolve })
    older = pulling
    // Failed files queue rows without sending them: send at every batch's end, so the queue stays bounded.
    pulling = pull(ctx, files, 0, received).then(sendRows)
    pulling.catch(() => {})
  }
  let pulling: Promise<void> | undefined
  let older: Promise<void> | undefined
  let receiving: Promise<void> | undefined

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
    await Promise.allSettled([older, pulling])
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
    for await (const { e, there: stated, finished } of statAhead(source.list(job.tree ?? {}, signal), plugin, urlOf, finishedBefore, signal)) {
      signal.throwIfAborted()
      if (mirror) listed.add(e.path)
      if (e.type === 'directory') {
        if (dryRun) continue
        // Owner-writable whatever the source's mode: a read-only directory could not receive its own files.
        await makeDirectory(urlOf(e.path), { signal, mode: e.mode | 0o700 })
        continue
      }
      result.files.total++
      if (e.type === 'skipped') {
        result.files.skipped++
        await row({ path: e.path, state: 'skipped', size: 0, reason: e.reason })
        continue
      }
      result.bytesTotal += e.size
      const source: ObjectVersion = { size: e.size, mtime: e.mtime }
      let there: ObjectVersion | undefined
      try {
        there = await stated
      } catch (err) {
        const x = toStaccatoError(err)
        if (x instanceof IsADirectoryError) { failFile(e.path, new IsADirectoryError(`a directory is where the file should go`)); continue }
        if (!(x instanceof NotFoundError)) throw x
      }
      if (finishedAlready(await finished, source, there)) {
        // Done by an earlier attempt of this transfer: not sent, hashed or compared again.
        result.files.done++
        result.bytesDone += e.size
        await row({ path: e.path, state: 'done', size: e.size })
        progress()
        continue
      }
      const decision = syncDecision(sync, source, there)
      if (decision === 'compare-checksums') {
        // Compared in batches: one request for the holder's digests of many files, not one round trip each.
        toCompare.push(e)
        if (toCompare.length >= TREE_BATCH) await compare()
      } else {
        await decided(e, decision)
      }
    }
    await compare()
    await flush()
    await flushLarge()
  }

  async function compare (): Promise<void> {
    const list = toCompare
    toCompare = []
    if (list.length === 0) return
    const same = await sameDigests(ctx, list, algorithm ?? 'sha256')
    for (const e of list) await decided(e, same.has(e.path) ? 'skip' : 'copy')
  }

  async function decided (e: TreeEntry, decision: 'copy' | 'skip'): Promise<void> {
    if (decision === 'skip') {
      result.files.skipped++
      await row({ path: e.path, state: 'skipped', size: e.size, reason: `unchanged (sync ${sync})` })
      progress()
      return
    }
    if (dryRun) {
      await row({ path: e.path, state: 'would-copy', size: e.size })
      return
    }
    const resume = checkpoint !== undefined && checkpoint.path === e.path && checkpoint.version.size === e.size && checkpoint.version.mtime === e.mtime ? checkpoint : undefined
    const f = { entry: e, offset: resume?.durableOffset ?? 0 }
    if (largeLane(e.size)) {
      large.push(f)
      largeBytes += e.size - f.offset
      if (large.length >= TREE_BATCH || largeBytes >= LARGE_BATCH_BYTES) await flushLarge()
      return
    }
    batch.push(f)
    batchBytes += e.size
    if (batch.length >= TREE_BATCH || batchBytes >= BATCH_BYTES) await flush()
  }
}

/** Files whose destination is stat'ed ahead of the one being decided: each stat is a few system calls, which overlap. */
const STAT_AHEAD = 16

/** Entries of the listing whose destinations are stat'ed in one call, where the plug-in can (statMany). */
const STAT_BATCH = 256

type Stated = { e: TreeEntry, there?: Promise<ObjectVersion>, finished?: Promise<ObjectVersion | undefined> }

type FinishedLookup = (paths: string[]) => Promise<Array<ObjectVersion | undefined>>

/**
 * The listing, each file with the stat of its destination started early, in
 * the listing's order: a batch at a time where the plug-in stats many at once
 * (a few µs a file, against a thread-pool round trip each), otherwise
 * STAT_AHEAD ahead. A stat that fails is the caller's to read: its promise is
 * handled here so that it never rejects unobserved.
 */
async function * statAhead (entries: AsyncIterable<TreeEntry>, plugin: ProtocolPlugin, urlOf: (path: string) => URL, finishedBefore: FinishedLookup | undefined, signal: AbortSignal): AsyncGenerator<Stated> {
  const statMany = plugin.statMany?.bind(plugin)
  if (statMany === undefined) {
    const queue: Stated[] = []
    for await (const e of entries) {
      const there = e.type === 'file' ? plugin.stat(urlOf(e.path), { signal }) : undefined
      there?.catch(() => {})
      const finished = e.type === 'file' && finishedBefore !== undefined ? finishedBefore([e.path]).then(r => r[0]) : undefined
      queue.push({ e, there, finished })
      if (queue.length > STAT_AHEAD) yield queue.shift() as Stated
    }
    yield * queue
    return
  }
  let batch: TreeEntry[] = []
  const stated = async function * (): AsyncGenerator<Stated> {
    const files = batch.filter(e => e.type === 'file')
    const paths = files.map(e => e.path)
    const [found, done] = files.length === 0 ? [[], []] : await Promise.all([statMany(paths.map(urlOf), { signal }), finishedBefore?.(paths) ?? []])
    const byPath = new Map(files.map((e, i) => [e.path, i]))
    for (const e of batch) {
      const i = byPath.get(e.path)
      const r = i === undefined ? undefined : found[i]
      const there = r === undefined ? undefined : r instanceof Error ? Promise.reject(r) : Promise.resolve(r)
      there?.catch(() => {})
      yield { e, there, finished: i === undefined ? undefined : Promise.resolve(done[i]) }
    }
    batch = []
  }
  for await (const e of entries) {
    batch.push(e)
    if (batch.length >= STAT_BATCH) yield * stated()
  }
  yield * stated()
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
async function pull (ctx: Ctx, files: Pending[], round = 0, received?: () => void): Promise<void> {
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
  const writeGroup = async (): Promise<void> => {
    const these = group
    group = []
    groupBytes = 0
    await writing
    if (these.length === 0) return
    // Written after the groups before it, this batch's and the last batch's: one at a time, in order.
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
    group.push({ entry: e, file: { url: ctx.urlOf(path), data, mtime: e.mtime > 0 ? e.mtime : undefined, mode: e.mode } })
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
        // The sink journals the file's offset into the tree's one entry: one file is part written at a time.
        const journal: Pick<TransferJournal, 'commitOffset'> = {
          commitOffset: async (fileEntry, offset) => {
            // A sync that ends once the next file's bytes flow: that file is the partial one now, and this one is being committed.
            if (ctx.latest !== f) return
            entry.treeFile = { path: f.entry.path, version, durableOffset: offset, prefixDigest: fileEntry.prefixDigest }
            await deps.journal.put(entry)
          }
        }
        const fileEntry: JournalEntry = { ...entry, version, durableOffset: f.offset }
        const hasher = f.hasher
        const sink = new DurableSink({
          writer: f.writer, journal, entry: fileEntry, prefixDigest: () => hasher?.digest(), clock: deps.clock,
          syncEveryBytes: deps.syncEveryBytes, syncEveryMs: deps.syncEveryMs, onJournaled: () => { deps.counters.journalCommits++ }
        })
        current = { f, sink, hasher }
        ctx.latest = f
        for await (const chunk of throttled(chunks, deps.download, signal)) {
          hasher?.update(chunk)
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
          if (entry.treeFile?.path === path) {
            delete entry.treeFile
            await deps.journal.put(entry)
          }
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
    await writing
    await Promise.all(commits)
    if (commitError !== undefined) throw commitError
    await journalCommitted()
    if (again.length > 0) await pull(ctx, again, round + 1, received)
  } catch (err) {
    received?.()
    // A group being written finishes (its files are then in place); the one being gathered was never written.
    await writing.catch(() => {})
    await Promise.all(commits)
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
  const cp: TreeFileCheckpoint | undefined = ctx.entry.treeFile
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
