import { setTimeout as sleep } from 'node:timers/promises'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, Stream } from '@libp2p/interface'
import {
  FrameReader, InvalidArgumentError, PermissionDeniedError, SWARM_PROTOCOL, SwarmMessage, WIRE_VERSION, decode, parseLocation, sendFrame, toStaccatoError, verifyTicket
} from '../../mesh/index.ts'
import type { ControlParams, Manifest, MeshNode, SwarmPeerInfo, TicketIssuer } from '../../mesh/index.ts'
import { resolveLocal } from '../resolve.ts'
import type { PluginSet } from '../resolve.ts'
import { Bitfield } from './bitfield.ts'
import { SwarmPeer } from './peer.ts'
import { REDIAL_AT_MAX, REDIAL_MS, RedialBackoff } from './redial.ts'
import { SwarmSession } from './session.ts'
import { PieceCache } from './piece-cache.ts'
import type { SessionOptions } from './session.ts'
import { manifestFor, pieceCount } from './manifest.ts'
import { discardPartial } from './storage.ts'
import { imageManifest } from './image.ts'
import { treeManifest } from './tree-seed.ts'
import { countBytes } from '../counters.ts'
import type { OciPlugin, ProtocolPlugin } from '../../protocols/index.ts'
import type { SwarmEntry } from '../journal.ts'

/** What every session needs, plus the node, the agent's name, the coordinator's key and the plug-ins. */
export interface SwarmServiceOptions extends Omit<SessionOptions, 'join' | 'source' | 'cache'> {
  node: MeshNode
  self: string
  issuer: TicketIssuer
  plugins: PluginSet
  /** Each session's piece map and bytes served, when they changed (the coordinator's swarm view). */
  stats?: (s: ControlParams<'swarmStats'>) => void
}

// A peer that opens a stream and never says hello must not hold it.
const HELLO_TIMEOUT_MS = 10_000
/** Rarest first makes the newest pieces the most asked for: 32 MiB holds the last 8 default (4 MiB) pieces. */
const PIECE_CACHE_BYTES = 32 * 1024 * 1024
/** The coordinator brings participants in one by one: a hello may beat our own join by this much. */
const JOIN_GRACE_MS = 3000
/** Distributions whose journaled outcome the coordinator acknowledged, remembered until it ends them (bounded). */
const ACKED_KEPT = 4096
/** Swarm stats are for a person watching: once a second is live enough, and bounds the control traffic. */
const STATS_EVERY_MS = 1000

/**
 * The agent's side of /staccato/swarm/1: its distributions, the streams to
 * other participants, and the hello exchange in which each side proves with
 * a coordinator ticket that it belongs to the distribution.
 */
export class SwarmService {
  private readonly opts: SwarmServiceOptions
  private readonly cache = new PieceCache(PIECE_CACHE_BYTES)
  private readonly sessions = new Map<string, { session: SwarmSession, join: ControlParams<'swarmJoin'>, stop: AbortController, redial: RedialBackoff }>()
  /** Journaled outcomes being reported with no session (after a restart), by distribution. */
  private readonly reporting = new Map<string, Promise<void>>()
  /**
   * Outcomes reported and acknowledged with no session: a join the coordinator
   * sent before it recorded the outcome must not start the download again.
   */
  private readonly acked = new Set<string>()
  /** The join being handled, by distribution. */
  private readonly joining = new Map<string, Promise<void>>()
  private statsTimer?: NodeJS.Timeout

  constructor (opts: SwarmServiceOptions) {
    this.opts = opts
  }

  async start (): Promise<void> {
    await this.opts.node.handle(SWARM_PROTOCOL, (stream, connection) => {
      void this.accept(stream, connection).catch(err => {
        this.opts.log('swarm stream refused', { peer: connection.remotePeer.toString(), error: toStaccatoError(err).message })
        stream.abort(toStaccatoError(err))
      })
    }, { maxInboundStreams: 64 })
    const stats = this.opts.stats
    if (stats !== undefined) {
      this.statsTimer = setInterval(() => {
        for (const { session } of this.sessions.values()) {
          const s = session.stats()
          if (s !== undefined) stats(s)
        }
      }, STATS_EVERY_MS)
      this.statsTimer.unref()
    }
  }

  active (): string[] {
    return [...this.sessions.keys()]
  }

  async manifest (p: ControlParams<'swarmManifest'>): Promise<Manifest> {
    const src = resolveLocal(p.source, this.opts.self, this.opts.plugins, 'source')
    if (p.image === true) {
      const { blobs, counters } = this.opts
      if (!isOciPlugin(src.plugin) || blobs === undefined) throw new InvalidArgumentError(`source: ${p.source} is not an image this agent can distribute`)
      // Not cached by reference: a tag moves, and the blob store makes a second look cheap.
      return await imageManifest({ plugin: src.plugin, url: src.url, pieceSize: p.pieceSize, blobs, onFetched: n => { countBytes(counters.bytesIn, 'oci', n) } })
    }
    if (p.tree !== undefined) {
      // Not cached: a tree changes file by file, and listing it is what would tell.
      return await treeManifest({ volumes: src.plugin, volumeList: this.opts.volumeList ?? [], dir: src.url, filter: p.tree, pieceSize: p.pieceSize })
    }
    return await manifestFor(src.plugin, src.url, p.pieceSize, this.opts.journal.manifests)
  }

  /**
   * Joins (or re-joins after a reconnect) a distribution. Joins of one
   * distribution run one after the other: two sessions opening the same
   * partial at once would each start it afresh under the other's pieces.
   */
  async join (join: ControlParams<'swarmJoin'>): Promise<void> {
    const id = join.distributionId
    // Only waits for the earlier join to settle: its failure was reported to its own caller.
    const run = (this.joining.get(id) ?? Promise.resolve()).catch(() => {}).then(async () => await this.joinNow(join))
    this.joining.set(id, run)
    try {
      await run
    } finally {
      if (this.joining.get(id) === run) this.joining.delete(id)
    }
  }

  private async joinNow (join: ControlParams<'swarmJoin'>): Promise<void> {
    const existing = this.sessions.get(join.distributionId)
    if (existing !== undefined) {
      // Fresh peers and ticket from the coordinator; the session carries on.
      existing.join = join
      existing.redial.renamed(join.peers.map(p => p.peerId))
      await existing.session.deliverOutcome()
      return
    }
    await this.reporting.get(join.distributionId)
    if (this.acked.has(join.distributionId)) return
    const source = join.role === 'seed' ? resolveLocal(join.source, this.opts.self, this.opts.plugins, 'source') : undefined
    const session = new SwarmSession({ ...this.opts, join, source, cache: this.cache })
    try {
      await session.start()
    } catch (err) {
      // The answer to the join carries the error: a destination that cannot take part fails, the others carry on.
      // The start's error is the one to report; a failure to close what never started would only hide it.
      await session.close(false, false).catch(() => {})
      throw err
    }
    const stop = new AbortController()
    this.sessions.set(join.distributionId, { session, join, stop, redial: new RedialBackoff() })
    this.opts.log('joined distribution', { distributionId: join.distributionId, role: join.role, peers: join.peers.map(p => p.name) })
    if (join.role === 'destination' && !session.isFinished) void this.dialLoop(join.distributionId, stop.signal)
    // Restored finished: its report goes beside the answer to this join, not before it.
    void session.deliverOutcome()
  }

  /**
   * After every registration: outcomes journaled while the coordinator was
   * away are reported, also those of distributions the coordinator will not
   * rejoin us to (it recorded the outcome but its acknowledgement was lost).
   */
  async deliverPending (): Promise<void> {
    for (const entry of await this.opts.journal.allSwarms()) {
      if (entry.outcome === undefined) continue
      const running = this.sessions.get(entry.distributionId)
      if (running !== undefined) await running.session.deliverOutcome()
      else await this.reportKept(entry, entry.outcome)
    }
  }

  private async reportKept (entry: SwarmEntry, outcome: NonNullable<SwarmEntry['outcome']>): Promise<void> {
    const id = entry.distributionId
    const inFlight = this.reporting.get(id)
    if (inFlight !== undefined) return await inFlight
    const run = (async () => {
      try {
        await this.opts.report({ distributionId: id, destination: entry.destination, ...outcome })
      } catch (err) {
        this.opts.log('could not report a journaled outcome yet', { distributionId: id, error: toStaccatoError(err).message })
        return
      }
      this.remember(id)
      await this.opts.journal.removeSwarm(id)
    })().finally(() => this.reporting.delete(id))
    this.reporting.set(id, run)
    await run
  }

  private remember (id: string): void {
    this.acked.add(id)
    for (const old of this.acked) {
      if (this.acked.size <= ACKED_KEPT) break
      this.acked.delete(old)
    }
  }

  /** The coordinator ended the distribution for this agent: nothing of it is kept to resume or report. */
  async leave (distributionId: string, removePartial: boolean): Promise<void> {
    // A session still starting is left once it has started.
    // Only waits for the join to settle: its failure was reported to its own caller.
    await this.joining.get(distributionId)?.catch(() => {})
    this.acked.delete(distributionId)
    const entry = this.sessions.get(distributionId)
    if (entry === undefined) {
      const kept = await this.opts.journal.getSwarm(distributionId)
      // An image's partials are one per blob and named by the manifest, which the journal does not keep: they stay.
      if (kept !== undefined && removePartial && !kept.destination.endsWith('/')) {
        await discardPartial(resolveLocal(kept.destination, this.opts.self, this.opts.plugins, 'destination'), distributionId).catch(err => {
          this.opts.log('could not remove the partial of a distribution left', { distributionId, error: toStaccatoError(err).message })
        })
      }
      if (kept !== undefined) await this.opts.journal.removeSwarm(distributionId)
      return
    }
    this.sessions.delete(distributionId)
    entry.stop.abort()
    await entry.session.close(removePartial, true)
    this.opts.log('left distribution', { distributionId, removePartial })
  }

  /** The agent stops: sessions end, their journal entries stay for the restart. */
  async stop (): Promise<void> {
    clearInterval(this.statsTimer)
    const entries = [...this.sessions.values()]
    this.sessions.clear()
    await Promise.all(entries.map(async e => {
      e.stop.abort()
      await e.session.close(false, false)
    }))
  }

  /** Keeps a destination connected to the peers the coordinator named, until it leaves the distribution. */
  private async dialLoop (id: string, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const entry = this.sessions.get(id)
      // A finished destination keeps its links too: it serves until the whole distribution ends.
      if (entry === undefined) return
      const { redial } = entry
      const seed = seedName(entry.join.source)
      for (const info of entry.join.peers) {
        if (entry.session.peers.has(info.peerId) || entry.session.banned.has(info.peerId)) continue
        // Between two destinations only the one with the lower peer id dials, so they never race into two streams.
        if (info.name !== seed && info.peerId < this.opts.node.peerId.toString()) continue
        if (!redial.due(info.peerId, Date.now())) continue
        try {
          await this.dial(entry.session, entry.join, info)
          redial.succeeded(info.peerId)
          entry.session.setReachable(info.peerId, true)
        } catch (err) {
          const count = redial.failed(info.peerId, Date.now())
          // Two failures in a row is no passing hiccup: stop waiting for this peer to serve us what the seed says it has.
          if (count >= 2) entry.session.setReachable(info.peerId, false)
          // The first failure and the one that reaches the longest back-off are worth a line; a peer that dropped us
          // (it caught us sending a bad piece) refuses every dial, and 500 ms of log lines for it helps nobody.
          if (count === 1 || count === REDIAL_AT_MAX) {
            this.opts.log(count === 1 ? 'could not reach swarm peer; dialing again with back-off' : 'still cannot reach swarm peer; dialing again every 8 s', { distributionId: id, peer: info.name, attempts: count, error: toStaccatoError(err).message })
          }
        }
      }
      // Rejects only when the signal aborts (the session is closing), which the loop checks next.
      await sleep(REDIAL_MS, undefined, { signal }).catch(() => {})
    }
  }

  private async dial (session: SwarmSession, join: ControlParams<'swarmJoin'>, info: SwarmPeerInfo): Promise<void> {
    const addrs = info.addrs.map(a => multiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${info.peerId}`))
    const stream = await this.opts.node.dialProtocol(addrs, SWARM_PROTOCOL, { signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) })
    const reader = new FrameReader(stream)
    try {
      const advertised = session.mine.toBase64()
      await sendFrame(stream, { v: WIRE_VERSION, t: 'hello', dist: session.id, ticket: join.ticket, have: advertised })
      const hello = await this.readHello(reader, session.id, info.peerId, pieceCount(session.manifest))
      if (session.peers.has(info.peerId)) {
        // The other side dialed us at the same moment; keep one stream.
        stream.abort(new PermissionDeniedError('duplicate swarm stream'))
        return
      }
      session.attach(new SwarmPeer(stream, reader, info.peerId, info.name, hello), Bitfield.fromBase64(pieceCount(session.manifest), advertised))
    } catch (err) {
      stream.abort(toStaccatoError(err))
      throw err
    }
  }

  private async accept (stream: Stream, connection: Connection): Promise<void> {
    const reader = new FrameReader(stream)
    const remote = connection.remotePeer.toString()
    const raw = await Promise.race([
      reader.readFrame(),
      sleep(HELLO_TIMEOUT_MS).then(() => { throw new PermissionDeniedError('no hello within 10 s') })
    ])
    const hello = decode(SwarmMessage, raw, 'swarm hello')
    if (hello.t !== 'hello') throw new PermissionDeniedError('a swarm stream starts with hello')
    await verifyTicket(hello.ticket, this.opts.issuer, { reader: remote, source: `swarm:${hello.dist}`, offset: 0 })
    const entry = await this.sessionFor(hello.dist)
    if (entry === undefined) throw new PermissionDeniedError(`not part of distribution ${hello.dist}`)
    const { session, join } = entry
    if (session.banned.has(remote)) throw new PermissionDeniedError('peer was dropped from this distribution')
    if (session.peers.has(remote)) throw new PermissionDeniedError('already connected to this peer for this distribution')
    const advertised = session.mine.toBase64()
    await sendFrame(stream, { v: WIRE_VERSION, t: 'hello', dist: session.id, ticket: join.ticket, have: advertised })
    const name = join.peers.find(p => p.peerId === remote)?.name ?? remote.slice(-8)
    const pieces = pieceCount(session.manifest)
    session.attach(new SwarmPeer(stream, reader, remote, name, Bitfield.fromBase64(pieces, hello.have)), Bitfield.fromBase64(pieces, advertised))
  }

  /** The session of a distribution, waiting briefly for a join that is on its way (the ticket was already checked). */
  private async sessionFor (id: string): Promise<{ session: SwarmSession, join: ControlParams<'swarmJoin'> } | undefined> {
    const deadline = Date.now() + JOIN_GRACE_MS
    while (!this.sessions.has(id) && Date.now() < deadline) await sleep(50)
    return this.sessions.get(id)
  }

  /** Reads the other side's hello and checks its ticket: both ends prove they belong to the distribution. */
  private async readHello (reader: FrameReader, dist: string, remote: string, pieces: number): Promise<Bitfield> {
    const hello = decode(SwarmMessage, await reader.readFrame(), 'swarm hello')
    if (hello.t !== 'hello' || hello.dist !== dist) throw new PermissionDeniedError('peer answered with something other than a hello for this distribution')
    await verifyTicket(hello.ticket, this.opts.issuer, { reader: remote, source: `swarm:${dist}`, offset: 0 })
    return Bitfield.fromBase64(pieces, hello.have)
  }
}

function seedName (source: string): string | undefined {
  const loc = parseLocation(source, 'source')
  return loc.kind === 'agent' ? loc.agent : loc.via
}

function isOciPlugin (p: ProtocolPlugin): p is OciPlugin {
  return typeof (p as Partial<OciPlugin>).resolveImage === 'function'
}
