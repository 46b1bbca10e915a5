import { NetworkError, SourceChangedError, toStaccatoError } from '../../mesh/index.ts'
import type { Job } from '../../mesh/index.ts'
import type { ObjectVersion, WriterAt } from '../../protocols/index.ts'
import type { Resolved } from '../resolve.ts'
import { entryForJob } from '../journal.ts'
import { newHasher } from './checksum.ts'
import { checksumModeOf, checkDigests, copy } from './copy.ts'
import type { CopyDeps, CopyResult } from './copy.ts'
import { OrderedHash } from './ordered-hash.ts'
import { RangeSink } from './range-sink.ts'
import { chooseLayout, contiguousEnd, durableBytes } from './ranges.ts'
import type { Range } from './ranges.ts'
import { Meter, throttled } from './stages.ts'

/**
 * A file copy on one stream or several: a large file from another agent into
 * a destination that writes at offsets is split into byte ranges pulled on
 * `streams` data streams at once (ranges.ts decides); anything else is the
 * single-stream copy.
 */
export async function copyFile (deps: CopyDeps, job: Job, src: Resolved, dst: Resolved, fromZero: boolean, signal: AbortSignal, streams: number): Promise<CopyResult> {
  // The agent plug-in reads any range of a volume file and asks its holder for the whole object's digest apart
  // from the bytes. Not a plug-in source read `via` another agent: that digest would read the object from its
  // origin (an HTTP server, say) a second time.
  const capable = src.location.kind === 'agent' && src.plugin.scheme === 'agent' && src.plugin.capabilities.resume && dst.plugin.openWriterAt !== undefined
  if (!capable) return await copy(deps, job, src, dst, fromZero, signal)
  const previous = await deps.journal.get(job.transferId)
  if (streams <= 1 && previous?.ranges === undefined) return await copy(deps, job, src, dst, fromZero, signal)
  const st = await src.plugin.stat(src.url, { signal })
  const version: ObjectVersion = { size: st.size, mtime: st.mtime, etag: st.etag }
  const layout = chooseLayout({ previous, version, mode: checksumModeOf(job), fromZero, streams, capable })
  if (layout.kind === 'single') {
    // A journaled multi-stream partial that is not resumed is replaced by the single-stream copy from zero.
    if (previous?.ranges !== undefined) await deps.journal.put({ ...previous, ranges: undefined, durableOffset: 0, prefixDigest: undefined })
    return await copy(deps, job, src, dst, fromZero || previous?.ranges !== undefined, signal)
  }
  return await copyRanges(deps, job, src, dst, version, layout.ranges, layout.resumed, signal)
}

async function copyRanges (deps: CopyDeps, job: Job, src: Resolved, dst: Resolved, version: ObjectVersion, planned: Range[], resume: boolean, signal: AbortSignal): Promise<CopyResult> {
  const { journal, counters, log } = deps
  const mode = checksumModeOf(job)
  const open = dst.plugin.openWriterAt as NonNullable<typeof dst.plugin.openWriterAt>
  const writer: WriterAt = await open.call(dst.plugin, dst.url, { key: job.transferId, size: version.size, resume, mtime: version.mtime > 0 ? version.mtime : undefined, signal })
  // A partial that is gone (or was not asked for) starts every range from zero.
  const ranges = writer.resumed ? planned : planned.map(r => ({ ...r, done: 0 }))
  const entry = entryForJob(job, { version, checksumMode: mode, durableOffset: contiguousEnd(ranges, ranges.map(r => r.done)), ranges: ranges.map(r => ({ ...r })) })
  await journal.put(entry)
  log(writer.resumed ? 'resuming on several streams' : 'copying on several streams', { transferId: job.transferId, ranges: ranges.length, kept: durableBytes(ranges) })
  const hasher = newHasher(mode)
  const readBack = writer.readBack === undefined ? undefined : writer.readBack.bind(writer)
  const ordered = hasher === undefined ? undefined : new OrderedHash(hasher, readBack ?? (async (offset, length) => await writer.readAt(offset, length)), readBack !== undefined)
  const sink: RangeSink = new RangeSink({ writer, journal, entry, ranges, clock: deps.clock, syncEveryBytes: deps.syncEveryBytes, syncEveryMs: deps.syncEveryMs, onJournaled: () => { counters.journalCommits++ }, onInFile: () => ordered?.advance(contiguousEnd(ranges, sink.inFile)) })
  const progress = (bytesDone: number): void => deps.progress({ transferId: job.transferId, attempt: job.attempt, bytesDone, bytesTotal: version.size })
  // One meter for all the streams: progress is the sum of the ranges.
  const meter = new Meter({ counters, from: src.plugin.scheme, to: dst.plugin.scheme, start: durableBytes(ranges), clock: deps.clock, everyMs: deps.progressEveryMs, progress })
  // The first stream that fails stops the others.
  const streams = new AbortController()
  const onAbort = (): void => streams.abort(signal.reason)
  signal.addEventListener('abort', onAbort, { once: true })
  let sourceDigest: string | undefined
  const pull = async (i: number): Promise<void> => {
    const r = ranges[i]
    const left = r.end - r.start - sink.written[i]
    if (left === 0) return
    const read = src.plugin.read(src.url, { offset: r.start + sink.written[i], length: left, expect: version, signal: streams.signal })
    // The shared bucket throttles every stream together: the agent's rate is for all its bytes.
    for await (const chunk of meter.count(throttled(read, deps.download, streams.signal))) {
      // A read does not watch the signal between chunks: stop here once another stream failed.
      streams.signal.throwIfAborted()
      ordered?.offer(r.start + sink.written[i], chunk)
      await sink.write(i, chunk)
      ordered?.advance(contiguousEnd(ranges, sink.inFile))
    }
    if (sink.written[i] !== r.end - r.start) throw new NetworkError(`range ${r.start}..${r.end} ended after ${sink.written[i]} of ${r.end - r.start} bytes`)
  }
  // The holder hashes the whole object in the transfer's algorithm, beside the ranges (a request for no bytes from the end).
  const askDigest = async (): Promise<void> => {
    for await (const chunk of src.plugin.read(src.url, { offset: version.size, expect: version, signal: streams.signal, onDigest: d => { sourceDigest = d } })) {
      throw new NetworkError(`the digest request got ${chunk.byteLength} bytes instead of none`)
    }
  }
  let first: { error: unknown } | undefined
  const failFast = async (p: Promise<void>): Promise<void> => {
    await p.catch(err => {
      first ??= { error: err }
      streams.abort(err)
    })
  }
  try {
    await sink.open()
    await Promise.all([...ranges.keys()].map(async i => await failFast(pull(i))).concat(hasher === undefined ? [] : [failFast(askDigest())]))
    // The others then fail with the abort: the first failure is the cause.
    if (first !== undefined) throw first.error
    await sink.finish()
    signal.throwIfAborted()
    meter.stop()
    progress(version.size)
    await deps.report({ transferId: job.transferId, attempt: job.attempt, outcome: 'verifying', bytesDone: version.size, bytesTotal: version.size }).catch(() => {})
    const digest = hasher === undefined || ordered === undefined ? undefined : { algorithm: hasher.algorithm, value: await ordered.digest(version.size) }
    checkDigests(job, digest, sourceDigest, version)
    await writer.commit()
    // After commit abort() only releases the handle.
    await writer.abort()
    return { bytes: version.size, digest }
  } catch (err) {
    meter.stop()
    const e = toStaccatoError(signal.aborted ? signal.reason : err)
    const keepPartial = e.retryable && !(e instanceof SourceChangedError)
    await sink.settle().catch(() => {})
    await sink.close().catch(() => {})
    // The transfer's own error is what gets reported; an abort that fails too leaves at most a partial, which the next attempt resumes or replaces.
    await writer.abort({ keepPartial }).catch(() => {})
    if (!keepPartial) {
      entry.durableOffset = 0
      delete entry.ranges
      await journal.put(entry)
    }
    throw e
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
