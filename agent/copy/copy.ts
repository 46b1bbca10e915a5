import { ChecksumMismatchError, NetworkError, SourceChangedError, toStaccatoError } from '../../mesh/index.ts'
import type { ChecksumMode, ControlParams, Job } from '../../mesh/index.ts'
import { canResumeWrites } from '../../protocols/index.ts'
import type { ObjectVersion, StatResult, Writer } from '../../protocols/index.ts'
import type { Resolved } from '../resolve.ts'
import type { Journal, JournalEntry } from '../journal.ts'
import { entryForJob } from '../journal.ts'
import type { AgentCounters } from '../counters.ts'
import type { TokenBucket } from '../rate-limit.ts'
import { newHasher } from './checksum.ts'
import type { Hasher } from './checksum.ts'
import type { Clock } from './clock.ts'
import { DurableSink } from './durable-sink.ts'
import { decideResume } from './resume.ts'
import { Meter, throttled } from './stages.ts'

export type TransferJournal = Pick<Journal, 'get' | 'put' | 'commitOffset'>

export interface CopyDeps {
  journal: TransferJournal
  counters: AgentCounters
  clock: Clock
  download?: TokenBucket
  report: (r: ControlParams<'report'>) => Promise<void>
  progress: (p: ControlParams<'progress'>) => void
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  syncEveryBytes: number
  syncEveryMs: number
  progressEveryMs: number
}

export interface CopyResult {
  bytes: number
  /** The whole object's digest in the transfer's checksum mode; absent in mode none. */
  digest?: { algorithm: 'sha256' | 'blake3', value: string }
  /** The destination already held this version: nothing was copied. */
  unchanged?: boolean
}

/** The bytes match the source, but not the checksum the user gave: another try cannot help. */
export class ExpectedChecksumError extends ChecksumMismatchError {}

export function checksumModeOf (job: Job): ChecksumMode {
  return job.checksumMode ?? 'sha256'
}

/**
 * One copy of a transfer: the resume decision, then source → hash → throttle →
 * meter → durable sink, then verification against the source's digest and
 * the pinned one, and only then commit (nothing is visible before the digests agree).
 */
export async function copy (deps: CopyDeps, job: Job, src: Resolved, dst: Resolved, fromZero: boolean, signal: AbortSignal): Promise<CopyResult> {
  const { journal, counters, log } = deps
  const mode = checksumModeOf(job)
  const st = await src.plugin.stat(src.url, { signal })
  const version: ObjectVersion = { size: st.size, mtime: st.mtime, etag: st.etag }
  const previous = await journal.get(job.transferId)
  const decision = decideResume({ previous, version, mode, fromZero, canResume: src.plugin.capabilities.resume && canResumeWrites(dst.plugin.capabilities) })
  if (!decision.resume && decision.why !== undefined) log('starting from zero', { transferId: job.transferId, reason: decision.why })
  const entry = entryForJob(job, { version, checksumMode: mode, durableOffset: decision.offset, prefixDigest: decision.resume ? decision.prefixDigest : undefined })
  const { writer, hasher } = await openWriter(deps, job, dst, entry, signal)
  let sourceDigest: string | undefined
  const sink = new DurableSink({
    writer,
    journal,
    entry,
    prefixDigest: () => hasher?.digest(),
    clock: deps.clock,
    syncEveryBytes: deps.syncEveryBytes,
    syncEveryMs: deps.syncEveryMs,
    onJournaled: () => { counters.journalCommits++ },
    hash: hasher === undefined ? undefined : chunk => { hasher.update(chunk) },
    // Every plug-in's read() gives fresh chunks unless asked for reuseBuffers, which this loop never does.
    writeBehind: true
  })
  const progress = (bytesDone: number): void => deps.progress({ transferId: job.transferId, attempt: job.attempt, bytesDone, bytesTotal: st.size })
  const meter = new Meter({ counters, from: src.plugin.scheme, to: dst.plugin.scheme, start: entry.durableOffset, clock: deps.clock, everyMs: deps.progressEveryMs, progress })
  try {
    const read = src.plugin.read(src.url, { offset: entry.durableOffset, expect: version, signal, onDigest: (d: string) => { sourceDigest = d } })
    for await (const chunk of meter.count(throttled(read, deps.download, signal))) await sink.write(chunk)
    await sink.settle()
    signal.throwIfAborted()
    const done = sink.offset
    if (done !== st.size) throw new NetworkError(`source ended after ${done} of ${st.size} bytes`)
    meter.stop()
    progress(done)
    // 'verifying' only shows the state early: the outcome that follows is journaled and reported until the coordinator has it.
    await deps.report({ transferId: job.transferId, attempt: job.attempt, outcome: 'verifying', bytesDone: done, bytesTotal: st.size }).catch(() => {})
    const digest = hasher === undefined ? undefined : { algorithm: hasher.algorithm, value: hasher.digest() }
    checkDigests(job, digest, sourceDigest, st)
    await sink.commit()
    return { bytes: done, digest }
  } catch (err) {
    meter.stop()
    const e = toStaccatoError(signal.aborted ? signal.reason : err)
    const keepPartial = e.retryable && !(e instanceof SourceChangedError)
    await sink.abort(keepPartial)
    if (!keepPartial) {
      entry.durableOffset = 0
      delete entry.prefixDigest
      await journal.put(entry)
    }
    throw e
  }
}

/**
 * Opens the destination at the journaled offset. The kept prefix is read back
 * and hashed: it must match the digest journaled with that offset, or the
 * partial was damaged and the transfer starts from zero. In checksum mode
 * none the kept prefix is taken as it is, as the user asked.
 */
async function openWriter (deps: CopyDeps, job: Job, dst: Resolved, entry: JournalEntry, signal: AbortSignal): Promise<{ writer: Writer, hasher: Hasher | undefined }> {
  const mode = checksumModeOf(job)
  const open = async (offset: number): Promise<Writer> => await dst.plugin.write(dst.url, { offset, size: entry.version.size, key: job.transferId, mtime: entry.version.mtime > 0 ? entry.version.mtime : undefined, signal })
  if (entry.durableOffset > 0) {
    try {
      const writer = await open(entry.durableOffset)
      const hasher = newHasher(mode)
      if (hasher === undefined) {
        deps.log('resuming', { transferId: job.transferId, offset: entry.durableOffset, unverified: true })
        await deps.journal.put(entry)
        return { writer, hasher }
      }
      if (writer.readPartial !== undefined && entry.prefixDigest !== undefined) {
        for await (const chunk of writer.readPartial({ signal })) hasher.update(chunk)
        if (hasher.digest() === entry.prefixDigest) {
          deps.log('resuming', { transferId: job.transferId, offset: entry.durableOffset })
          await deps.journal.put(entry)
          return { writer, hasher }
        }
        deps.log('kept partial does not match its journaled digest; starting from zero', { transferId: job.transferId })
      }
      await writer.abort({ keepPartial: false })
    } catch (err) {
      deps.log('cannot resume; starting from zero', { transferId: job.transferId, error: String(err) }, 'warn')
    }
    entry.durableOffset = 0
    delete entry.prefixDigest
  }
  await deps.journal.put(entry)
  return { writer: await open(0), hasher: newHasher(mode) }
}

export function checkDigests (job: Job, digest: CopyResult['digest'], sourceDigest: string | undefined, st: StatResult): void {
  if (digest === undefined) return
  // A plug-in's stat() only knows a sha256; the data server's trailer is in the asked algorithm.
  const fromSource = sourceDigest ?? (digest.algorithm === 'sha256' ? st.sha256 : undefined)
  if (fromSource !== undefined && fromSource !== digest.value) {
    throw new ChecksumMismatchError(`${job.destination}: received bytes hash to ${digest.algorithm} ${digest.value}, the source's to ${fromSource}`)
  }
  if (job.checksum !== undefined && job.checksum.value !== digest.value) {
    throw new ExpectedChecksumError(`${job.source} has sha256 ${digest.value}, not the expected ${job.checksum.value}`)
  }
}
