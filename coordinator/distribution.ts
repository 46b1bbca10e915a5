import type { PrivateKey } from '@libp2p/interface'
import { AgentOfflineError, InvalidArgumentError, parseLocation, signTicket, toStaccatoError } from '../mesh/index.ts'
import type { ControlParams, ErrorInfo, TreeManifest } from '../mesh/index.ts'
import type { TransferStore } from './store.ts'
import type { DestinationStatus, FileCounts, TransferRecord } from './model.ts'
import type { TreeFileRow } from './store-tree-files.ts'
import { TERMINAL_STATES } from './model.ts'
import type { AgentControl } from './agent-sessions.ts'
import type { Clock } from './clock.ts'
import { storeMissed } from './store-missed.ts'
import type { PartHandlers } from './registry.ts'
import { SEED_FANOUT, choosePeers, servingParticipants } from './peer-set.ts'

export interface DistributionOptions {
  store: TransferStore
  agents: AgentControl
  clock: Clock
  key: PrivateKey
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** Default piece size; 4 MiB as in Kraken and Dragonfly. */
  pieceSize: number
  /** Peers named to each participant (Kraken hands out a bounded random subset). */
  peersPerParticipant: number
  /** About how many destinations are given the seed as a peer (peer-set.ts); by default SEED_FANOUT. */
  seedFanout?: number
  ticketTtlSeconds: number
}

const DONE: ReadonlySet<DestinationStatus['state']> = new Set(['succeeded', 'failed', 'canceled'])

/** The agent that seeds a distribution: the source's agent, or its `via`. */
export function seedAgent (rec: TransferRecord): string | undefined {
  const loc = parseLocation(rec.source, 'source')
  return loc.kind === 'agent' ? loc.agent : loc.via
}

/** An oci:// image into OCI layouts (every destination a directory): its blobs go through the swarm by digest. */
export function isImageDistribution (rec: Pick<TransferRecord, 'source' | 'destinations'>): boolean {
  return rec.source.startsWith('oci://') && (rec.destinations ?? []).every(d => d.destination.endsWith('/'))
}

/** A directory source (it ends in /) into directories: its files go through the swarm as one object (agent/swarm/tree-seed.ts, tree-writer.ts). */
export function isTreeDistribution (rec: Pick<TransferRecord, 'source' | 'tree' | 'destinations'>): boolean {
  return rec.tree !== undefined && rec.destinations !== undefined && rec.source.endsWith('/')
}

/** One destination's counts as a tree distribution starts: every file to place, the skipped entries skipped. */
function treeCounts (tree: TreeManifest): FileCounts {
  return { total: tree.files.length + tree.skipped.length, done: 0, skipped: tree.skipped.length, failed: 0 }
}

/** The whole distribution's counts: every destination's, added up (as its bytes are). */
export function sumFiles (dests: readonly DestinationStatus[]): FileCounts | undefined {
  if (!dests.some(d => d.files !== undefined)) return undefined
  const sum: FileCounts = { total: 0, done: 0, skipped: 0, failed: 0 }
  for (const d of dests) {
    if (d.files === undefined) continue
    sum.total += d.files.total
    sum.done += d.files.done
    sum.skipped += d.files.skipped
    sum.failed += d.files.failed
  }
  return sum
}

/** A destination's counts once it ended: placed every file, or failed those it had not placed. */
function endedFiles (files: FileCounts | undefined, outcome: DestinationStatus['state']): FileCounts | undefined {
  if (files === undefined) return undefined
  const toPlace = files.total - files.skipped
  if (outcome === 'succeeded') return { ...files, done: toPlace, failed: 0 }
  if (outcome === 'failed') return { ...files, failed: toPlace - files.done }
  return files
}

/** Rows of a tree's file listing sent to the store at once (as the agents send theirs). */
const ROWS_PER_PUT = 256

/**
 * The coordinator as tracker for one-to-many distributions: it asks the seed
 * for the manifest, tells every participant which peers are in the swarm,
 * issues their tickets and records each destination's outcome. It never
 * touches the data.
 */
export class DistributionManager {
  private readonly opts: DistributionOptions
  /** What participants report: each destination's outcome (calls) and progress (casts). */
  readonly handlers: Pick<PartHandlers, 'swarmReport' | 'swarmProgress'> = {
    swarmReport: async (r, { agent }) => {
      await this.onReport(agent, r)
      return {}
    },
    swarmProgress: async (p, { agent }) => { this.onProgress(agent, p) }
  }

  /**
   * The peers last named to each participant, by distribution: a re-join keeps
   * those still online (choosePeers' `previous`). In memory only: after a
   * restart (or on another replica) a participant simply gets a fresh draw.
   */
  private readonly named = new Map<string, Map<string, string[]>>()

  constructor (opts: DistributionOptions) {
    this.opts = opts
  }

  /** A scheduled distribution: get the manifest, then bring every participant in. */
  async start (rec: TransferRecord): Promise<void> {
    const { store, agents } = this.opts
    const seed = seedAgent(rec)
    if (seed === undefined) throw new InvalidArgumentError('source: a distribution needs a source on an agent')
    if (rec.manifest === undefined) {
      const tree = isTreeDistribution(rec) ? { tree: { include: rec.tree?.include, exclude: rec.tree?.exclude } } : {}
      const manifest = await agents.call(seed, 'swarmManifest', { distributionId: rec.id, source: rec.source, pieceSize: this.opts.pieceSize, ...(isImageDistribution(rec) ? { image: true } : {}), ...tree })
      const counts = manifest.tree !== undefined ? treeCounts(manifest.tree) : undefined
      const withManifest = await store.update(rec.id, r => ({ manifest, ...(counts !== undefined ? { destinations: (r.destinations ?? []).map(d => ({ ...d, files: { ...counts } })) } : {}) }),
        `transfer.${rec.id}.manifest`, { size: manifest.size, pieceSize: manifest.pieceSize, sha256: manifest.sha256, ...(counts !== undefined ? { files: counts.total } : {}) })
      if (manifest.tree !== undefined && withManifest !== undefined) await this.treeStarted(withManifest, manifest.tree)
    }
    const current = await store.transition(rec.id, 'active', {}, { from: ['scheduled'] })
    await this.joinAll(current)
  }

  private participants (rec: TransferRecord): string[] {
    const seed = seedAgent(rec)
    const destinations = (rec.destinations ?? []).filter(d => !DONE.has(d.state)).map(d => d.agent)
    return [...new Set([...(seed !== undefined ? [seed] : []), ...destinations])]
  }

  private async joinAll (rec: TransferRecord): Promise<void> {
    await Promise.all(this.participants(rec).map(async agent => await this.join(rec, agent).catch(err => {
      this.opts.log('could not bring an agent into a distribution; it joins when it reconnects', { transferId: rec.id, agent, error: toStaccatoError(err).message }, 'warn')
    })))
  }

  /** Brings `agent` in (again) with fresh peers; `prefer` go first in its list. Resolves with the peers named. */
  private async join (rec: TransferRecord, agent: string, prefer?: string[]): Promise<string[]> {
    const { store, agents } = this.opts
    const seed = seedAgent(rec)
    const self = store.getAgent(agent)
    if (self === undefined || !agents.isOnline(agent) || rec.manifest === undefined) throw new AgentOfflineError(`agent '${agent}' is offline`)
    const role = agent === seed ? 'seed' : 'destination'
    const others = servingParticipants(seed, rec.destinations ?? []).filter(a => a !== agent && agents.isOnline(a))
    const size = this.opts.peersPerParticipant
    const lists = this.named.get(rec.id) ?? new Map<string, string[]>()
    this.named.set(rec.id, lists)
    const chosen = choosePeers({ seed, others, prefer, previous: lists.get(agent), size, seedFanout: this.opts.seedFanout ?? SEED_FANOUT, random: Math.random })
    lists.set(agent, chosen)
    const peers = chosen.flatMap(name => {
      const a = store.getAgent(name)
      return a !== undefined ? [{ name, peerId: a.peerId, addrs: a.addrs }] : []
    })
    const ticket = await signTicket(this.opts.key, {
      v: 1, tid: rec.id, src: `swarm:${rec.id}`, off: 0, rdr: self.peerId, exp: Math.floor(this.opts.clock.now() / 1000) + this.opts.ticketTtlSeconds
    })
    const destination = rec.destinations?.find(d => d.agent === agent)
    const params: ControlParams<'swarmJoin'> = { distributionId: rec.id, role, source: rec.source, destination: destination?.destination, manifest: rec.manifest, peers, ticket }
    try {
      await agents.call(agent, 'swarmJoin', params)
    } catch (err) {
      const e = toStaccatoError(err)
      if (destination === undefined || e.retryable) throw e
      // This destination cannot take part (its partial's name holds a symlink, its volume refuses…): it fails, the others carry on.
      await this.onReport(agent, { distributionId: rec.id, destination: destination.destination, outcome: 'failed', error: e.toJSON() })
      return chosen
    }
    if (destination?.state === 'queued') await this.setDestination(rec.id, agent, { state: 'active' })
    return chosen
  }

  /** An agent (re)registered: it rejoins the distributions it is part of, resuming from its journal. */
  onAgentOnline (agent: string): void {
    for (const rec of this.opts.store.inState('active')) {
      if (rec.destinations === undefined || !this.participants(rec).includes(agent)) continue
      void this.join(rec, agent).then(named => {
        // The peers it was given learn about it too (whichever of two has the lower id dials), and only they:
        // telling every participant would cost the tracker N joins for each agent that comes back.
        for (const other of named) {
          // Not worth a warning: that participant hears of the newcomer when it (re)joins itself.
          void this.join(rec, other, [agent]).catch(err => { this.opts.log('could not tell a participant of a new peer', { transferId: rec.id, agent: other, peer: agent, error: toStaccatoError(err).message }) })
        }
      }, err => this.opts.log('rejoin failed', { transferId: rec.id, agent, error: toStaccatoError(err).message }, 'warn'))
    }
  }

  async onReport (agent: string, r: ControlParams<'swarmReport'>): Promise<void> {
    const rec = this.opts.store.get(r.distributionId)
    if (r.destination === undefined) {
      // Only for a distribution: a plain transfer's id must not be failed (or canceled) through here.
      if (rec?.destinations !== undefined && seedAgent(rec) === agent && r.outcome === 'failed') await this.onSeedFailed(rec, r)
      return
    }
    const dest = rec?.destinations?.find(d => d.agent === agent && d.destination === r.destination)
    if (rec === undefined || dest === undefined || DONE.has(dest.state) || TERMINAL_STATES.has(rec.state)) return
    const manifest = rec.manifest
    // An image destination reports the hash of the blobs laid end to end; the image is named by its manifest's digest.
    const sha256 = r.outcome === 'succeeded' && manifest?.image !== undefined ? manifest.image.digest.slice('sha256:'.length) : r.sha256
    const patch: Partial<DestinationStatus> = { state: r.outcome, sha256, bytesDone: r.outcome === 'succeeded' ? manifest?.size ?? dest.bytesDone : dest.bytesDone }
    const files = endedFiles(dest.files, r.outcome)
    if (files !== undefined) patch.files = files
    if (r.error !== undefined) patch.lastError = { ...r.error, at: this.isoNow() }
    const updated = await this.setDestination(rec.id, agent, patch)
    // Delivered twice at once: the first one recorded it.
    if (updated === undefined) return
    this.opts.log(`distribution destination ${r.outcome}`, { transferId: rec.id, agent, error: r.error?.message }, r.outcome === 'failed' ? 'warn' : 'info')
    // A finished destination keeps serving its pieces to the others until the whole distribution ends.
    if (r.outcome === 'failed') this.opts.agents.cast(agent, 'swarmLeave', { distributionId: rec.id, removePartial: true })
    const sum = sumFiles(updated.destinations ?? [])
    if (sum !== undefined && !(updated.destinations ?? []).every(d => DONE.has(d.state))) {
      await this.opts.store.setProgress(rec.id, { bytesDone: updated.progress.bytesDone, files: sum })
        .catch(storeMissed(this.opts.log, 'could not record a tree distribution\'s counts', { transferId: rec.id, agent }))
    }
    await this.finishIfDone(updated)
  }

  /**
   * The seed cannot read the source any more (it changed, or is gone): no
   * destination can finish with this manifest, so every one still running
   * fails with the seed's error instead of waiting for pieces that never come.
   */
  private async onSeedFailed (rec: TransferRecord, r: ControlParams<'swarmReport'>): Promise<void> {
    if (TERMINAL_STATES.has(rec.state) || r.error === undefined) return
    const lastError = { ...r.error, at: this.isoNow() }
    this.opts.log('distribution source unreadable at the seed', { transferId: rec.id, error: r.error.message }, 'warn')
    let updated = rec
    for (const d of rec.destinations ?? []) {
      if (!DONE.has(d.state)) updated = await this.setDestination(rec.id, d.agent, { state: 'failed', lastError }) ?? updated
    }
    // Every destination is done now: finishIfDone fails the record and sends each participant away, partials removed.
    await this.finishIfDone(updated)
  }

  onProgress (agent: string, p: ControlParams<'swarmProgress'>): void {
    const rec = this.opts.store.get(p.distributionId)
    if (rec?.destinations === undefined || rec.state !== 'active') return
    const dest = rec.destinations.find(d => d.agent === agent && d.destination === p.destination)
    if (dest === undefined) return
    const bytesDone = rec.destinations.reduce((sum, d) => sum + (d === dest ? p.bytesDone : d.bytesDone), 0)
    const bytesTotal = (rec.manifest?.size ?? 0) * rec.destinations.length
    const tree = p.filesDone !== undefined && dest.files !== undefined
      ? { destinationFiles: { [agent]: p.filesDone }, files: sumFiles(rec.destinations.map(d => d === dest ? { ...d, files: { ...(d.files as FileCounts), done: p.filesDone as number } } : d)) }
      : {}
    void this.opts.store.setProgress(rec.id, { bytesDone, bytesTotal, destinations: { [agent]: p.bytesDone }, ...tree })
      .catch(storeMissed(this.opts.log, 'could not record distribution progress', { transferId: rec.id, agent }))
  }

  /** The whole distribution was canceled: every participant stops, and destinations drop their partials. */
  onCanceled (rec: TransferRecord): void {
    this.named.delete(rec.id)
    const seed = seedAgent(rec)
    for (const agent of new Set([...(seed !== undefined ? [seed] : []), ...(rec.destinations ?? []).map(d => d.agent)])) {
      this.opts.agents.cast(agent, 'swarmLeave', { distributionId: rec.id, removePartial: true })
    }
  }

  /** Cancels one destination; the others carry on. */
  async cancelDestination (rec: TransferRecord, destination: string): Promise<TransferRecord> {
    const dest = rec.destinations?.find(d => d.destination === destination || d.agent === destination)
    if (dest === undefined) throw new InvalidArgumentError(`destination: ${destination} is not a destination of ${rec.id}`)
    if (DONE.has(dest.state)) return rec
    const updated = await this.setDestination(rec.id, dest.agent, { state: 'canceled' })
    if (updated === undefined) return this.opts.store.get(rec.id) ?? rec
    this.opts.agents.cast(dest.agent, 'swarmLeave', { distributionId: rec.id, removePartial: true })
    return await this.finishIfDone(updated)
  }

  /** Resolves with undefined, having written nothing, when no destination of that agent is still open. */
  private async setDestination (id: string, agent: string, patch: Partial<DestinationStatus>): Promise<TransferRecord | undefined> {
    const now = this.isoNow()
    return await this.opts.store.update(id, rec => {
      // A destination that is done stays done, whatever arrives late (the same outcome twice included): checked in the write.
      if (!(rec.destinations ?? []).some(d => d.agent === agent && !DONE.has(d.state))) return undefined
      return { destinations: (rec.destinations ?? []).map(d => d.agent === agent && !DONE.has(d.state) ? { ...d, ...patch, updatedAt: now } : d) }
    }, `transfer.${id}.destination`, { agent, state: patch.state, error: patch.lastError }, { now: this.opts.clock.now() })
  }

  /** The listing of a tree distribution starts with its skipped entries, and its counts with the manifest's. */
  private async treeStarted (rec: TransferRecord, tree: TreeManifest): Promise<void> {
    const rows: TreeFileRow[] = tree.skipped.map(s => ({ path: s.path, state: 'skipped', size: 0, reason: s.reason }))
    for (let i = 0; i < rows.length; i += ROWS_PER_PUT) await this.opts.store.putTreeFiles(rec.id, rows.slice(i, i + ROWS_PER_PUT))
    const files = sumFiles(rec.destinations ?? [])
    await this.opts.store.setProgress(rec.id, { bytesDone: 0, bytesTotal: rec.manifest !== undefined ? rec.manifest.size * (rec.destinations ?? []).length : undefined, files })
  }

  /**
   * The tree is listed once for the whole distribution (each destination's
   * counts are on it): every file done once a destination placed it
   * (each verified it against the manifest), or failed with the error when
   * none could.
   */
  private async treeEnded (id: string, tree: TreeManifest, anySucceeded: boolean, error: ErrorInfo | undefined): Promise<void> {
    const rows: TreeFileRow[] = tree.files.map(f => anySucceeded || error === undefined
      ? { path: f.path, state: anySucceeded ? 'done' : 'skipped', size: f.size, ...(anySucceeded ? {} : { reason: 'canceled' }) }
      : { path: f.path, state: 'failed', size: f.size, error: { code: error.code, message: error.message, retryable: error.retryable } })
    for (let i = 0; i < rows.length; i += ROWS_PER_PUT) {
      await this.opts.store.putTreeFiles(id, rows.slice(i, i + ROWS_PER_PUT)).catch(storeMissed(this.opts.log, 'could not record a tree distribution\'s files', { transferId: id }))
    }
  }

  private isoNow (): string {
    return new Date(this.opts.clock.now()).toISOString()
  }

  /** When every destination is done: succeeded if none failed, and every participant stops serving. */
  private async finishIfDone (rec: TransferRecord): Promise<TransferRecord> {
    const dests = rec.destinations ?? []
    if (!dests.every(d => DONE.has(d.state)) || TERMINAL_STATES.has(rec.state)) return rec
    const failed = dests.find(d => d.state === 'failed')
    const anySucceeded = dests.some(d => d.state === 'succeeded')
    const to = failed !== undefined ? 'failed' : anySucceeded ? 'succeeded' : 'canceled'
    const bytesDone = dests.reduce((sum, d) => sum + d.bytesDone, 0)
    // Every destination verified its whole file before reporting; the record passes through verifying like a transfer.
    if (to === 'succeeded') await this.opts.store.transition(rec.id, 'verifying', {}, { from: ['active'] })
    const done = await this.opts.store.transition(rec.id, to, {
      // An image is named by its manifest's digest (what `skopeo inspect` shows), not by its blobs laid end to end.
      sha256: anySucceeded ? rec.manifest?.image?.digest.slice('sha256:'.length) ?? rec.manifest?.sha256 : undefined,
      lastError: failed?.lastError !== undefined ? { ...failed.lastError, attempt: rec.attempt } : undefined,
      progress: { ...rec.progress, bytesDone, rate: 0, eta: 0, ...(sumFiles(dests) !== undefined ? { files: sumFiles(dests) } : {}) }
    })
    if (rec.manifest?.tree !== undefined) await this.treeEnded(rec.id, rec.manifest.tree, anySucceeded, failed?.lastError)
    this.named.delete(rec.id)
    for (const agent of this.participants({ ...rec, destinations: [] })) this.opts.agents.cast(agent, 'swarmLeave', { distributionId: rec.id, removePartial: false })
    for (const d of dests) this.opts.agents.cast(d.agent, 'swarmLeave', { distributionId: rec.id, removePartial: d.state !== 'succeeded' })
    return done
  }
}
