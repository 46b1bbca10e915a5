import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'
import {
  CanceledError, ChecksumMismatchError, NetworkError, SourceChangedError, UnsupportedError, errorFields, parseLocation, toStaccatoError
} from '../mesh/index.ts'
import type { ControlParams, Job, MeshNode, StaccatoError } from '../mesh/index.ts'
import { agent as agentPlugin, canResumeWrites } from '../protocols/index.ts'
import type { ObjectVersion, StatResult, Writer } from '../protocols/index.ts'
import { resolveLocal } from './resolve.ts'
import { isImageJob, runImageJob } from './image-job.ts'
import type { PluginSet, Resolved } from './resolve.ts'
import type { Journal, JournalEntry } from './journal.ts'
import { countBytes } from './counters.ts'
import type { AgentCounters } from './counters.ts'
import type { TokenBucket } from './rate-limit.ts'

export type Report = ControlParams<'report'>

export interface ExecutorOptions {
  self: string
  node: MeshNode
  plugins: PluginSet
  journal: Journal
  counters: AgentCounters
  download?: TokenBucket
  /** Sends a report to the coordinator; rejects when it cannot be delivered now. */
  report: (r: Report) => Promise<void>
  progress: (p: ControlParams<'progress'>) => void
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** Sync the partial and journal the offset after this many bytes… */
  syncEveryBytes: number
  /** …or after this long, whichever comes first, so a slow link loses little on a crash. */
  syncEveryMs: number
  progressEveryMs: number
}

interface Running { attempt: number, controller: AbortController, done: Promise<void> }

interface CopyResult { sha256: string, bytes: number }

/**
 * Runs transfers on this agent: source plug-in → hash → destination plug-in,
 * journaling the durable offset so that a crash resumes where it stopped.
 * Nothing is renamed into place before the digests agree.
 */
export class Executor {
  private readonly opts: ExecutorOptions
  private readonly running = new Map<string, Running>()

  constructor (opts: ExecutorOptions) {
    this.opts = opts
  }

  active (): string[] {
    return [...this.running.keys()]
  }

  /** The attempts running now, for the registration: the coordinator keeps them active rather than start new ones. */
  runningAttempts (): Array<{ transferId: string, attempt: number }> {
    return [...this.running].map(([transferId, r]) => ({ transferId, attempt: r.attempt }))
  }

  /** Outcomes in the journal that the coordinator has not acknowledged yet. */
  async journaledOutcomes (): Promise<Report[]> {
    return (await this.opts.journal.all()).flatMap(e => e.outcome !== undefined ? [reportOf(e)] : [])
  }

  /** Starts a job in the background. Re-sending the same attempt is harmless. */
  async accept (job: Job): Promise<void> {
    const current = this.running.get(job.transferId)
    if (current?.attempt === job.attempt) return
    if (current !== undefined) {
      current.controller.abort(new NetworkError(`superseded by attempt ${job.attempt}`))
      await current.done
    }
    const controller = new AbortController()
    const done = this.run(job, controller.signal).finally(() => {
      if (this.running.get(job.transferId)?.controller === controller) this.running.delete(job.transferId)
    })
    this.running.set(job.transferId, { attempt: job.attempt, controller, done })
  }

  /** Stops a transfer and removes its partial: the coordinator already recorded it as canceled. */
  async cancel (transferId: string): Promise<void> {
    const current = this.running.get(transferId)
    if (current !== undefined) {
      current.controller.abort(new CanceledError())
      await current.done
      return
    }
    const entry = await this.opts.journal.get(transferId)
    if (entry === undefined) return
    await this.discardPartial(entry).catch(err => this.opts.log('could not remove partial of canceled transfer', { transferId, error: String(err) }, 'warn'))
    await this.opts.journal.remove(transferId)
  }

  async stop (): Promise<void> {
    for (const r of this.running.values()) r.controller.abort(new NetworkError('agent is stopping'))
    await Promise.allSettled([...this.running.values()].map(r => r.done))
  }

  private async run (job: Job, signal: AbortSignal): Promise<void> {
    const { log } = this.opts
    log('transfer started', { transferId: job.transferId, attempt: job.attempt, source: job.source, destination: job.destination })
    const earlier = await this.opts.journal.get(job.transferId)
    if (earlier?.outcome?.outcome === 'succeeded' && earlier.attempt !== job.attempt && await this.stillCurrent(job, earlier, signal)) {
      // The object is in place from an earlier attempt whose outcome the coordinator has not taken yet: report it, do not copy again.
      log('already delivered by an earlier attempt; reporting that', { transferId: job.transferId, attempt: job.attempt, earlierAttempt: earlier.attempt })
      await this.finish(job, earlier.outcome)
      return
    }
    try {
      const result = await this.transfer(job, signal)
      this.opts.counters.transfersSucceeded++
      log('transfer succeeded', { transferId: job.transferId, bytes: result.bytes, sha256: result.sha256 })
      await this.finish(job, { outcome: 'succeeded', sha256: result.sha256, bytesDone: result.bytes, bytesTotal: result.bytes })
    } catch (err) {
      const e = toStaccatoError(signal.aborted ? signal.reason : err)
      if (e instanceof CanceledError) {
        log('transfer canceled', { transferId: job.transferId })
        await this.opts.journal.remove(job.transferId)
        return
      }
      this.opts.counters.transfersFailed++
      log('transfer failed', { transferId: job.transferId, retryable: e.retryable, ...errorFields(e) }, 'warn')
      const entry = await this.opts.journal.get(job.transferId)
      await this.finish(job, { outcome: 'failed', error: e.toJSON(), bytesDone: entry?.durableOffset ?? 0 })
    }
  }

  /** Records the outcome in the journal first, so that it reaches the coordinator even if it is down right now. */
  private async finish (job: Job, outcome: NonNullable<JournalEntry['outcome']>): Promise<void> {
    const { journal } = this.opts
    const entry = await journal.get(job.transferId) ?? {
      transferId: job.transferId, attempt: job.attempt, source: job.source, destination: job.destination, version: { size: 0, mtime: 0 }, durableOffset: 0, updatedAt: Date.now()
    }
    // A retryable failure keeps the offset for the next attempt; anything else ends the entry.
    entry.attempt = job.attempt
    entry.outcome = outcome
    await journal.put(entry)
    await this.deliver(entry)
  }

  /** Sends a journaled outcome; called again for every pending entry after reconnecting. */
  async deliver (entry: JournalEntry): Promise<boolean> {
    if (entry.outcome === undefined) return true
    try {
      await this.opts.report(reportOf(entry))
    } catch (err) {
      const e = toStaccatoError(err)
      // Kept in the journal either way: it goes again with the next registration.
      this.opts.log(e.code === 'network' || e.code === 'timeout' ? 'outcome kept until the coordinator is reachable' : 'the coordinator refused an outcome; kept in the journal',
        { transferId: entry.transferId, attempt: entry.attempt, outcome: entry.outcome.outcome, ...errorFields(e) })
      return false
    }
    await this.acknowledged(reportOf(entry))
    return true
  }

  /**
   * The coordinator took an outcome (reported, or sent with the registration):
   * a retryable failure keeps the offset for the next attempt; anything else
   * ends the entry. Only the outcome that was sent is cleared, not a newer one.
   */
  async acknowledged (sent: Report): Promise<void> {
    const { transferId } = sent
    const entry = await this.opts.journal.get(transferId)
    if (entry?.outcome === undefined || entry.attempt !== sent.attempt || entry.outcome.outcome !== sent.outcome) return
    const { outcome, error } = entry.outcome
    const keepForResume = outcome === 'failed' && error?.retryable === true && error.code !== 'source_changed'
    if (keepForResume) {
      delete entry.outcome
      await this.opts.journal.put(entry)
    } else {
      await this.opts.journal.remove(transferId)
    }
  }

  /** The source is still the version an earlier attempt delivered, and the destination holds an object of its size. */
  private async stillCurrent (job: Job, earlier: JournalEntry, signal: AbortSignal): Promise<boolean> {
    try {
      const src = this.openSource(job)
      const dst = resolveLocal(job.destination, this.opts.self, this.opts.plugins, 'destination')
      const st = await src.plugin.stat(src.url, { signal })
      const there = await dst.plugin.stat(dst.url, { signal })
      return sameVersion(earlier.version, { size: st.size, mtime: st.mtime, etag: st.etag }) && there.size === st.size
    } catch (err) {
      this.opts.log('cannot tell whether an earlier attempt still holds; copying again', { transferId: job.transferId, ...errorFields(toStaccatoError(err)) })
      return false
    }
  }

  private openSource (job: Job): Resolved {
    const loc = parseLocation(job.source, 'source')
    // A plug-in source `via` another agent is read by that agent and pulled from it, as a volume file is.
    const holder = loc.kind === 'agent' ? loc.agent : loc.via
    if (holder !== undefined && holder !== this.opts.self) {
      if (job.ticket === undefined || job.sourcePeer === undefined) throw new UnsupportedError(`no ticket to read ${job.source} from agent '${holder}'`)
      return { plugin: agentPlugin({ node: this.opts.node, peer: job.sourcePeer, ticket: job.ticket }), url: loc.url, location: loc }
    }
    return resolveLocal(job.source, this.opts.self, this.opts.plugins, 'source')
  }

  private async transfer (job: Job, signal: AbortSignal): Promise<CopyResult> {
    const src = this.openSource(job)
    const dst = resolveLocal(job.destination, this.opts.self, this.opts.plugins, 'destination')
    if (!src.plugin.capabilities.read) throw new UnsupportedError(`the ${src.plugin.scheme} plug-in cannot read (source ${job.source})`)
    if (!dst.plugin.capabilities.write) throw new UnsupportedError(`the ${dst.plugin.scheme} plug-in cannot write (destination ${job.destination})`)
    if (isImageJob(src, job.destination)) {
      const { counters, download, journal, syncEveryBytes, progressEveryMs } = this.opts
      const progress = (bytesDone: number, bytesTotal: number): void => this.opts.progress({ transferId: job.transferId, attempt: job.attempt, bytesDone, bytesTotal })
      return await runImageJob({ job, src, dst, signal, counters, download, journal, syncEveryBytes, progressEveryMs, progress })
    }
    try {
      return await this.copy(job, src, dst, false, signal)
    } catch (err) {
      if (!(err instanceof ChecksumMismatchError) || err instanceof ExpectedChecksumError) throw err
      // Bytes were damaged somewhere between the two disks: discard everything and try once more from zero.
      this.opts.log('checksum mismatch; retrying once from zero', { transferId: job.transferId, error: err.message }, 'warn')
      return await this.copy(job, src, dst, true, signal)
    }
  }

  private async copy (job: Job, src: Resolved, dst: Resolved, fromZero: boolean, signal: AbortSignal): Promise<CopyResult> {
    const { journal, counters } = this.opts
    const st = await src.plugin.stat(src.url, { signal })
    const version: ObjectVersion = { size: st.size, mtime: st.mtime, etag: st.etag }
    const previous = await journal.get(job.transferId)
    const resumable = !fromZero && previous !== undefined && sameVersion(previous.version, version) &&
      src.plugin.capabilities.resume && canResumeWrites(dst.plugin.capabilities) && previous.durableOffset <= st.size
    if (previous !== undefined && !resumable && previous.durableOffset > 0) {
      this.opts.log('starting from zero', { transferId: job.transferId, reason: fromZero ? 'asked to' : 'source changed or plug-ins cannot resume' })
    }
    const entry: JournalEntry = {
      transferId: job.transferId,
      attempt: job.attempt,
      source: job.source,
      destination: job.destination,
      version,
      durableOffset: resumable ? previous.durableOffset : 0,
      prefixSha256: resumable ? previous.prefixSha256 : undefined,
      updatedAt: Date.now()
    }
    const { writer, hash } = await this.openWriter(job, dst, entry, signal)
    let sourceDigest: string | undefined
    let done = entry.durableOffset
    let sinceSync = 0
    let lastSync = Date.now()
    // One sync at a time runs beside the copy: the bytes up to an offset reach the disk,
    // then that offset and the digest of the bytes before it are journaled, while later
    // bytes keep coming (waiting for the disk every few MiB halved file → file throughput).
    let syncing: Promise<void> | undefined
    let syncError: unknown
    const startSync = (): void => {
      const offset = done
      const prefixSha256 = hash.copy().digest('hex')
      syncing = (async () => {
        const durable = await writer.sync()
        // The digest covers exactly the bytes before `offset`: journal that, and only if it is on disk.
        if (durable < offset) return
        entry.prefixSha256 = prefixSha256
        await journal.commitOffset(entry, offset)
        counters.journalCommits++
      })().catch(err => { syncError ??= err })
    }
    const settleSync = async (): Promise<void> => {
      await syncing
      syncing = undefined
      if (syncError !== undefined) throw syncError
    }
    const timer = setInterval(() => this.opts.progress({ transferId: job.transferId, attempt: job.attempt, bytesDone: done, bytesTotal: st.size }), this.opts.progressEveryMs)
    try {
      const chunks = src.plugin.read(src.url, { offset: done, expect: version, signal, onDigest: d => { sourceDigest = d } })
      for await (const chunk of chunks) {
        if (syncError !== undefined) throw syncError
        if (this.opts.download !== undefined) await this.opts.download.take(chunk.byteLength, signal)
        await writer.write(chunk)
        hash.update(chunk)
        done += chunk.byteLength
        sinceSync += chunk.byteLength
        counters.bytesReceived += chunk.byteLength
        countBytes(counters.bytesIn, src.plugin.scheme, chunk.byteLength)
        countBytes(counters.bytesOut, dst.plugin.scheme, chunk.byteLength)
        if (sinceSync >= this.opts.syncEveryBytes || Date.now() - lastSync >= this.opts.syncEveryMs) {
          // A disk slower than the network holds the copy here, one sync interval behind.
          await settleSync()
          startSync()
          sinceSync = 0
          lastSync = Date.now()
        }
      }
      await settleSync()
      signal.throwIfAborted()
      if (done !== st.size) throw new NetworkError(`source ended after ${done} of ${st.size} bytes`)
      clearInterval(timer)
      this.opts.progress({ transferId: job.transferId, attempt: job.attempt, bytesDone: done, bytesTotal: st.size })
      // 'verifying' only shows the state early: the outcome that follows is journaled and reported until the coordinator has it.
      await this.opts.report({ transferId: job.transferId, attempt: job.attempt, outcome: 'verifying', bytesDone: done, bytesTotal: st.size }).catch(() => {})
      const sha256 = hash.digest('hex')
      checkDigests(job, sha256, sourceDigest, st)
      await writer.commit()
      return { sha256, bytes: done }
    } catch (err) {
      clearInterval(timer)
      await syncing
      const e: StaccatoError = toStaccatoError(signal.aborted ? signal.reason : err)
      const keepPartial = e.retryable && !(e instanceof SourceChangedError)
      // The transfer's own error (e) is what gets reported; an abort that fails too leaves at most a partial, which the next attempt resumes or replaces.
      await writer.abort({ keepPartial }).catch(() => {})
      if (!keepPartial) {
        entry.durableOffset = 0
        delete entry.prefixSha256
        await journal.put(entry)
      }
      throw e
    }
  }

  /**
   * Opens the destination at the journaled offset. The kept prefix is read back
   * and hashed: it must match the digest journaled with that offset, or the
   * partial was damaged and the transfer starts from zero.
   */
  private async openWriter (job: Job, dst: Resolved, entry: JournalEntry, signal: AbortSignal): Promise<{ writer: Writer, hash: Hash }> {
    const open = async (offset: number): Promise<Writer> => await dst.plugin.write(dst.url, { offset, size: entry.version.size, key: job.transferId, signal })
    if (entry.durableOffset > 0) {
      try {
        const writer = await open(entry.durableOffset)
        const hash = createHash('sha256')
        if (writer.readPartial !== undefined && entry.prefixSha256 !== undefined) {
          for await (const chunk of writer.readPartial({ signal })) hash.update(chunk)
          if (hash.copy().digest('hex') === entry.prefixSha256) {
            this.opts.log('resuming', { transferId: job.transferId, offset: entry.durableOffset })
            await this.opts.journal.put(entry)
            return { writer, hash }
          }
          this.opts.log('kept partial does not match its journaled digest; starting from zero', { transferId: job.transferId })
        }
        await writer.abort({ keepPartial: false })
      } catch (err) {
        this.opts.log('cannot resume; starting from zero', { transferId: job.transferId, error: String(err) }, 'warn')
      }
      entry.durableOffset = 0
      delete entry.prefixSha256
    }
    await this.opts.journal.put(entry)
    return { writer: await open(0), hash: createHash('sha256') }
  }

  private async discardPartial (entry: JournalEntry): Promise<void> {
    const dst = resolveLocal(entry.destination, this.opts.self, this.opts.plugins, 'destination')
    // Offset 0 always opens (and so can remove) the partial, whatever is left of it.
    const writer = await dst.plugin.write(dst.url, { offset: 0, size: entry.version.size, key: entry.transferId })
    await writer.abort({ keepPartial: false })
  }
}

/** The bytes match the source, but not the checksum the user gave: another try cannot help. */
class ExpectedChecksumError extends ChecksumMismatchError {}

function reportOf (entry: JournalEntry): Report {
  const { outcome, sha256, error, bytesDone, bytesTotal } = entry.outcome ?? { outcome: 'failed', bytesDone: 0 }
  return { transferId: entry.transferId, attempt: entry.attempt, outcome, sha256, error, bytesDone, bytesTotal }
}

function sameVersion (a: ObjectVersion, b: ObjectVersion): boolean {
  return a.size === b.size && a.mtime === b.mtime && a.etag === b.etag
}

function checkDigests (job: Job, sha256: string, sourceDigest: string | undefined, st: StatResult): void {
  const fromSource = sourceDigest ?? st.sha256
  if (fromSource !== undefined && fromSource !== sha256) {
    throw new ChecksumMismatchError(`${job.destination}: received bytes hash to ${sha256}, the source's to ${fromSource}`)
  }
  if (job.checksum !== undefined && job.checksum.value !== sha256) {
    throw new ExpectedChecksumError(`${job.source} has sha256 ${sha256}, not the expected ${job.checksum.value}`)
  }
}

