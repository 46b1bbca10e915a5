import {
  CanceledError, ChecksumMismatchError, IsADirectoryError, NetworkError, NotFoundError, UnsupportedError, errorFields, namesDirectory, parseLocation, toStaccatoError
} from '../mesh/index.ts'
import type { ControlParams, Job, MeshNode } from '../mesh/index.ts'
import { agent as agentPlugin } from '../protocols/index.ts'
import type { ObjectVersion, Volume } from '../protocols/index.ts'
import { resolveLocal } from './resolve.ts'
import { isImageJob, runImageJob } from './image-job.ts'
import type { PluginSet, Resolved } from './resolve.ts'
import type { Journal, JournalEntry } from './journal.ts'
import { entryForJob } from './journal.ts'
import type { AgentCounters } from './counters.ts'
import type { TokenBucket } from './rate-limit.ts'
import type { BlobIndex } from './blob-index.ts'
import { ExpectedChecksumError, checksumModeOf } from './copy/copy.ts'
import type { copy } from './copy/copy.ts'
import { copyFile } from './copy/multi-copy.ts'
import { durableBytes } from './copy/ranges.ts'
import type { CopyResult } from './copy/copy.ts'
import { systemClock } from './copy/clock.ts'
import type { Clock } from './copy/clock.ts'
import { sameVersion } from './copy/resume.ts'
import { newHasher } from './copy/checksum.ts'
import { decideOverwrite, planDestination, sourceIsDirectory } from './copy/destination.ts'
import type { Existing } from './copy/destination.ts'
import { copyTree } from './tree/copy-tree.ts'
import { localTreeSource } from './tree/local.ts'
import { remoteTreeSource } from './tree/source.ts'
import type { TreeSource } from './tree/source.ts'

export type Report = ControlParams<'report'>

export interface ExecutorOptions {
  self: string
  node: MeshNode
  plugins: PluginSet
  journal: ExecutorJournal
  counters: AgentCounters
  download?: TokenBucket
  /** Sends a report to the coordinator; rejects when it cannot be delivered now. */
  report: (r: Report) => Promise<void>
  progress: (p: ControlParams<'progress'>) => void
  /** Sends a tree's files as they end; rejects when it cannot be delivered now. */
  treeFiles?: (p: ControlParams<'treeFiles'>) => Promise<void>
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** Sync the partial and journal the offset after this many bytes… */
  syncEveryBytes: number
  /** …or after this long, whichever comes first, so a slow link loses little on a crash. */
  syncEveryMs: number
  progressEveryMs: number
  /** Data streams a large file is pulled on when its job does not say (1 when absent). */
  streams?: number
  /** Large files of a tree carried at once (agent/tree/policy.ts DEFAULT_TREE_STREAMS when absent). */
  treeStreams?: number
  /** The progress timer's, the sync interval's and the throttle's time; the system's when absent. */
  clock?: Clock
  /** Where an image transfer records the blobs it wrote (absent in unit tests). */
  blobs?: BlobIndex
  /** The agent's volumes, for a tree inside this agent (the volumes plug-in confines each file to its tree with them). */
  volumeList?: readonly Volume[]
}

/** What the executor needs of the journal (an in-memory one in unit tests). */
export type ExecutorJournal = Pick<Journal, 'get' | 'put' | 'commitOffset' | 'remove' | 'all' | 'putTreeFiles' | 'treeFilesDone' | 'hasTreeFiles'>

interface Running { attempt: number, controller: AbortController, done: Promise<void> }

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

  private async run (sent: Job, signal: AbortSignal): Promise<void> {
    const { log } = this.opts
    log('transfer started', { transferId: sent.transferId, attempt: sent.attempt, source: sent.source, destination: sent.destination })
    let job: Job
    try {
      job = planned(sent)
    } catch (err) {
      await this.failed(sent, err, signal)
      return
    }
    const earlier = await this.opts.journal.get(job.transferId)
    if (earlier?.outcome?.outcome === 'succeeded' && earlier.attempt !== job.attempt && await this.stillCurrent(job, earlier, signal)) {
      // The object is in place from an earlier attempt whose outcome the coordinator has not taken yet: report it, do not copy again.
      log('already delivered by an earlier attempt; reporting that', { transferId: job.transferId, attempt: job.attempt, earlierAttempt: earlier.attempt })
      await this.finish(job, earlier.outcome)
      return
    }
    if (namesDirectory(parseLocation(job.source, 'source'))) {
      await this.runTree(job, signal)
      return
    }
    try {
      const result = await this.transfer(job, signal)
      this.opts.counters.transfersSucceeded++
      const digest = digestFields(result)
      log('transfer succeeded', { transferId: job.transferId, bytes: result.bytes, ...digest })
      // An unchanged destination moved nothing: the record says so, and still carries the digest of what is there.
      await this.finish(job, { outcome: 'succeeded', ...digest, bytesDone: result.unchanged === true ? 0 : result.bytes, bytesTotal: result.bytes })
    } catch (err) {
      await this.failed(job, err, signal)
    }
  }

  /** A tree: one outcome for all its files, with their counts; it fails if any file failed. */
  private async runTree (job: Job, signal: AbortSignal): Promise<void> {
    try {
      const loc = parseLocation(job.source, 'source')
      if (loc.kind !== 'agent') throw new UnsupportedError(`source: ${job.source}: a tree is copied from an agent's volume`)
      const dst = resolveLocal(job.destination, this.opts.self, this.opts.plugins, 'destination')
      let source: TreeSource
      if (loc.agent === this.opts.self) {
        // A tree inside this agent: read from its own volumes, no stream and no ticket.
        if (this.opts.volumeList === undefined) throw new UnsupportedError(`source: ${job.source}: this agent was not given its volume list`)
        source = localTreeSource({ volumes: this.opts.plugins.volumes, volumeList: this.opts.volumeList, counters: this.opts.counters }, this.opts.self, job.source)
      } else {
        if (job.ticket === undefined || job.sourcePeer === undefined) throw new UnsupportedError(`source: ${job.source}: no ticket for agent '${loc.agent}'`)
        source = remoteTreeSource({ node: this.opts.node, peerId: job.sourcePeer.peerId, addrs: job.sourcePeer.addrs, ticket: job.ticket, source: job.source })
      }
      const { journal, counters, download, log, syncEveryBytes, syncEveryMs, progressEveryMs } = this.opts
      const progress = (p: ControlParams<'progress'>): void => this.opts.progress(p)
      const treeFiles = this.opts.treeFiles ?? (async () => {})
      const deps = { node: this.opts.node, journal, counters, download, log, syncEveryBytes, syncEveryMs, progressEveryMs, progress, treeFiles, treeStreams: this.opts.treeStreams, clock: this.opts.clock ?? systemClock }
      const r = await copyTree(deps, job, source, dst, signal)
      log('tree copied', { transferId: job.transferId, ...r.files, bytes: r.bytesDone, deleted: r.deleted })
      const counts = { files: r.files, bytesDone: r.bytesDone, bytesTotal: r.bytesTotal }
      if (r.firstError !== undefined) {
        this.opts.counters.transfersFailed++
        const error = { ...r.firstError, message: `${r.files.failed} of ${r.files.total} files failed; the first: ${r.firstError.message}`.slice(0, 4096) }
        await this.finish(job, { outcome: 'failed', error, ...counts })
        return
      }
      this.opts.counters.transfersSucceeded++
      await this.finish(job, { outcome: 'succeeded', ...counts })
    } catch (err) {
      await this.failed(job, err, signal)
    }
  }

  private async failed (job: Job, err: unknown, signal: AbortSignal): Promise<void> {
    const { log } = this.opts
    const e = toStaccatoError(signal.aborted ? signal.reason : err)
    if (e instanceof CanceledError) {
      log('transfer canceled', { transferId: job.transferId })
      await this.opts.journal.remove(job.transferId)
      return
    }
    this.opts.counters.transfersFailed++
    log('transfer failed', { transferId: job.transferId, retryable: e.retryable, ...errorFields(e) }, 'warn')
    const entry = await this.opts.journal.get(job.transferId)
    // A multi-stream copy keeps more than its gap-free prefix: every range's durable bytes.
    const kept = entry?.ranges !== undefined ? durableBytes(entry.ranges) : entry?.durableOffset
    await this.finish(job, { outcome: 'failed', error: e.toJSON(), bytesDone: kept ?? 0 })
  }

  /** Records the outcome in the journal first, so that it reaches the coordinator even if it is down right now. */
  private async finish (job: Job, outcome: NonNullable<JournalEntry['outcome']>): Promise<void> {
    const { journal } = this.opts
    const entry = await journal.get(job.transferId) ?? entryForJob(job)
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
      const mode = checksumModeOf(job)
      // The holder hashes what it reads in the transfer's own algorithm: that digest is the end-to-end check.
      const plugin = agentPlugin({ node: this.opts.node, peer: job.sourcePeer, ticket: job.ticket, digest: mode !== 'none', algorithm: mode === 'blake3' ? 'blake3' : 'sha256' })
      return { plugin, url: loc.url, location: loc }
    }
    return resolveLocal(job.source, this.opts.self, this.opts.plugins, 'source')
  }

  private async transfer (job: Job, signal: AbortSignal): Promise<CopyResult> {
    const src = this.openSource(job)
    const dst = resolveLocal(job.destination, this.opts.self, this.opts.plugins, 'destination')
    if (!src.plugin.capabilities.read) throw new UnsupportedError(`the ${src.plugin.scheme} plug-in cannot read (source ${job.source})`)
    if (!dst.plugin.capabilities.write) throw new UnsupportedError(`the ${dst.plugin.scheme} plug-in cannot write (destination ${job.destination})`)
    if (isImageJob(src, job.destination)) {
      const { counters, download, journal, syncEveryBytes, progressEveryMs, blobs } = this.opts
      const progress = (bytesDone: number, bytesTotal: number): void => this.opts.progress({ transferId: job.transferId, attempt: job.attempt, bytesDone, bytesTotal })
      const image = await runImageJob({ job, src, dst, signal, counters, download, journal, syncEveryBytes, progressEveryMs, progress, blobs })
      // An image is named by its manifest's sha256 digest, whatever checksum mode the transfer asked for.
      return { bytes: image.bytes, digest: { algorithm: 'sha256', value: image.sha256 } }
    }
    const { source, existing } = await this.preflight(job, src, dst, signal)
    if (decideOverwrite(job.overwrite ?? 'always', source, existing, job.destination) === 'unchanged' && source !== undefined) {
      this.opts.log('destination unchanged (same size and mtime); not copied', { transferId: job.transferId, destination: job.destination })
      return await this.unchanged(job, dst, source, signal)
    }
    const streams = job.streams ?? this.opts.streams ?? 1
    try {
      return await copyFile(this.copyDeps(), job, src, dst, false, signal, streams)
    } catch (err) {
      if (!(err instanceof ChecksumMismatchError) || err instanceof ExpectedChecksumError) throw err
      // Bytes were damaged somewhere between the two disks: discard everything and try once more from zero.
      this.opts.log('checksum mismatch; retrying once from zero', { transferId: job.transferId, error: err.message }, 'warn')
      return await copyFile(this.copyDeps(), job, src, dst, true, signal, streams)
    }
  }

  /**
   * Looks at both ends before a byte moves: a source directory named without
   * its slash, or a directory where the file should land, fails now rather
   * than after the copy. A plug-in end (an HTTP server, say) is asked only
   * when `overwrite` needs it: a stat there is a request of its own.
   */
  private async preflight (job: Job, src: Resolved, dst: Resolved, signal: AbortSignal): Promise<{ source?: ObjectVersion, existing: Existing }> {
    const overwrite = job.overwrite ?? 'always'
    let source: ObjectVersion | undefined
    if (src.location.kind === 'agent' || overwrite === 'if-different') {
      source = await src.plugin.stat(src.url, { signal }).catch(err => {
        throw toStaccatoError(err) instanceof IsADirectoryError ? sourceIsDirectory(job.source) : err
      })
    }
    let existing: Existing = { kind: 'none' }
    if (dst.location.kind !== 'agent' && overwrite === 'always') return { source, existing }
    try {
      existing = { kind: 'file', version: await dst.plugin.stat(dst.url, { signal }) }
    } catch (err) {
      const e = toStaccatoError(err)
      if (e instanceof IsADirectoryError) existing = { kind: 'directory' }
      // Anything else (missing, or a plug-in that cannot stat what it writes) leaves the decision to the write.
      else if (!(e instanceof NotFoundError) && overwrite !== 'always') {
        throw new UnsupportedError(`destination: cannot tell whether ${job.destination} exists (${e.message}), so overwrite ${overwrite} cannot be kept`)
      }
    }
    return { source, existing }
  }

  /** The destination already holds the source's version: report the digest of what is there, read locally. */
  private async unchanged (job: Job, dst: Resolved, version: ObjectVersion, signal: AbortSignal): Promise<CopyResult> {
    const hasher = newHasher(checksumModeOf(job))
    if (hasher !== undefined) {
      for await (const chunk of dst.plugin.read(dst.url, { offset: 0, expect: undefined, signal })) hasher.update(chunk)
    }
    const digest = hasher === undefined ? undefined : { algorithm: hasher.algorithm, value: hasher.digest() }
    return { bytes: version.size, digest, unchanged: true }
  }

  private copyDeps (): Parameters<typeof copy>[0] {
    const { journal, counters, download, report, progress, log, syncEveryBytes, syncEveryMs, progressEveryMs } = this.opts
    return { journal, counters, download, report, progress, log, syncEveryBytes, syncEveryMs, progressEveryMs, clock: this.opts.clock ?? systemClock }
  }

  private async discardPartial (entry: JournalEntry): Promise<void> {
    const dst = resolveLocal(entry.destination, this.opts.self, this.opts.plugins, 'destination')
    // Offset 0 always opens (and so can remove) the partial, whatever is left of it.
    const writer = await dst.plugin.write(dst.url, { offset: 0, size: entry.version.size, key: entry.transferId })
    await writer.abort({ keepPartial: false })
  }
}

/** The job with its destination as it lands: a file sent to `dir/` goes to `dir/<its name>`. An image's `dir/` is its layout directory. */
function planned (job: Job): Job {
  const source = parseLocation(job.source, 'source')
  if (source.kind === 'plugin' && source.scheme === 'oci') return job
  return { ...job, destination: planDestination(job.source, job.destination) }
}

function reportOf (entry: JournalEntry): Report {
  const { outcome, sha256, blake3, error, bytesDone, bytesTotal, files } = entry.outcome ?? { outcome: 'failed', bytesDone: 0 }
  return { transferId: entry.transferId, attempt: entry.attempt, outcome, sha256, blake3, error, bytesDone, bytesTotal, files }
}

/** The digest as the report carries it: one field per algorithm. */
function digestFields (r: CopyResult): { sha256?: string, blake3?: string } {
  if (r.digest === undefined) return {}
  return r.digest.algorithm === 'blake3' ? { blake3: r.digest.value } : { sha256: r.digest.value }
}
