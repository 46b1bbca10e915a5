import { createHash } from 'node:crypto'
import { ChecksumMismatchError, ProtocolError, SourceChangedError, toStaccatoError } from '../../mesh/index.ts'
import type { ControlParams, Manifest, StaccatoError } from '../../mesh/index.ts'
import type { WriterAt } from '../../protocols/index.ts'
import { resolveLocal } from '../resolve.ts'
import type { PluginSet, Resolved } from '../resolve.ts'
import type { Journal, SwarmEntry } from '../journal.ts'
import type { AgentCounters } from '../counters.ts'
import type { TokenBucket } from '../rate-limit.ts'
import { Bitfield } from './bitfield.ts'
import { PiecePicker } from './picker.ts'
import type { PieceCache } from './piece-cache.ts'
import { pieceCount, pieceRange } from './manifest.ts'
import type { PeerLink } from './peer-link.ts'
import { ServeQueue } from './serve-queue.ts'
import { RequestPacer } from './pace.ts'
import { UploadTurns } from './serve-order.ts'
import { askSeedAlone } from './sole.ts'
import { seedRefusal } from './super-seed.ts'
import { discardPartial, openPieceWriter, sourceStorage, writerStorage } from './storage.ts'
import type { PieceStorage } from './storage.ts'
import { imageSourceStorage, isImageWriter, openImageWriter } from './image.ts'
import type { BlobIndex } from '../blob-index.ts'
import type { Volume } from '../../protocols/index.ts'
import { isTreeWriter, openTreeWriter } from './tree-writer.ts'
import { treeSourceStorage } from './tree-seed.ts'

/**
 * Requests in flight to one peer, on average (RequestPacer shares them out by
 * each peer's rate to us; a peer gets this many until it has delivered). A peer serves its requests in order, so a
 * deep queue holds a rare piece behind common ones: bench:swarm-sim
 * (N = 1,000, uniform caps) gives p99 1.58 × the bound with 4 and 1.36 × with
 * 2, and with churn 3.97 × against 2.69 ×. Two pieces per peer, times a peer
 * set of up to 16, still keep a link busy.
 */
export const MAX_OUTSTANDING = 2
/** Verified pieces are synced and journaled at least this often, so a crash loses little. */
const FLUSH_EVERY_MS = 1000

/** The session's ticker outside tests. */
function every (ms: number, fn: () => void): () => void {
  const timer = setInterval(fn, ms)
  return () => { clearInterval(timer) }
}

export interface SessionOptions {
  join: ControlParams<'swarmJoin'>
  /** This agent's name and plug-ins: a destination writes its pieces through the plug-in that holds it. */
  self: string
  plugins: PluginSet
  /** The seed reads its pieces through the plug-in that holds the source. */
  source?: Resolved
  journal: Journal
  counters: AgentCounters
  /** Runs `fn` every `ms` until the returned stop is called; setInterval unless a test drives time itself. */
  every?: (ms: number, fn: () => void) => () => void
  /** A monotonic clock in ms, for pacing requests by each peer's rate; performance.now unless a test drives time. */
  now?: () => number
  /** The agent's cache of pieces to serve, shared by its distributions. */
  cache: PieceCache
  /** The blobs this agent holds (an image distribution's seed reads them, its destinations look there first). */
  blobs?: BlobIndex
  /** The agent's volumes: a tree distribution's seed keeps every file it reads inside the tree. */
  volumeList?: readonly Volume[]
  upload?: TokenBucket
  download?: TokenBucket
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  progress: (p: ControlParams<'swarmProgress'>) => void
  report: (r: ControlParams<'swarmReport'>) => Promise<void>
}

/**
 * One agent's part in one distribution: the seed serves every piece; a
 * destination fetches what it misses (rarest first), verifies each piece's
 * sha256 before storing or serving it, serves what it has, and at the end
 * verifies the whole object and commits it. Pieces are stored and read only
 * through the plug-ins (storage.ts).
 */
export class SwarmSession {
  readonly id: string
  readonly role: 'seed' | 'destination'
  readonly manifest: Manifest
  readonly mine: Bitfield
  readonly peers = new Map<string, PeerLink>()
  /** Peers caught sending a bad piece: never talked to again in this distribution. */
  readonly banned = new Set<string>()
  /** Participants our dialer keeps failing to reach. */
  private readonly unreachable = new Set<string>()
  /** How often the seed refused each missing piece while naming holders we are not connected to. */
  private readonly holderWaits = new Map<number, number>()
  private readonly opts: SessionOptions
  private readonly picker: PiecePicker
  private readonly pieces: number
  /** Which peer the seed last sent each piece to (super-seeding). */
  private readonly sentTo = new Map<number, string>()
  /** Pieces the seed has sent for the first time. */
  private sentNew = 0
  private storage?: PieceStorage
  private writer?: WriterAt
  private dirty = false
  private stopTicks?: () => void
  private finished = false
  private closed = false
  /** Keyed by the peer object, not its id: a peer that reconnects gets a fresh queue and loop while the old loop winds down. */
  private readonly serveQueues = new Map<PeerLink, ServeQueue>()
  /** Keyed by the peer object too: a reconnected peer is measured afresh. */
  private readonly pacer = new RequestPacer<PeerLink>()
  /** Our serve loops (one per peer) take the upload one at a time, rarest piece and emptiest asker first. */
  private readonly turns = new UploadTurns()
  private readonly now: () => number
  /**
   * Stored pieces not yet read back from the target and checked, in the order
   * they were stored; one reader works through them while the rest arrives
   * (readBackLoop).
   */
  private readonly toReadBack: number[] = []
  private readingBack = false
  private readBack: Promise<void> = Promise.resolve()
  private readBackCount = 0
  private readBackError?: StaccatoError
  /** The commit under way: a plug-in's writer may refuse reads while it renames the object into place. */
  private committing?: Promise<void>
  private outcome?: ControlParams<'swarmReport'>
  private reported = false
  private delivering?: Promise<void>
  private seedFailed = false
  /** Bytes served to each peer (by peer id) in this session, and whether that or `mine` changed since the last stats. */
  private readonly served = new Map<string, number>()
  private statsDirty = true

  constructor (opts: SessionOptions) {
    this.opts = opts
    this.now = opts.now ?? (() => performance.now())
    this.id = opts.join.distributionId
    this.role = opts.join.role
    this.manifest = opts.join.manifest
    this.pieces = pieceCount(this.manifest)
    this.mine = this.role === 'seed' ? Bitfield.full(this.pieces) : new Bitfield(this.pieces)
    this.picker = new PiecePicker(this.mine)
    if (opts.source !== undefined) {
      this.storage = this.manifest.image !== undefined && opts.blobs !== undefined
        ? imageSourceStorage(this.manifest, opts.blobs)
        : this.manifest.tree !== undefined
          ? treeSourceStorage(this.manifest, opts.source.plugin, opts.volumeList ?? [], opts.source.url)
          : sourceStorage(opts.source, this.manifest)
    }
  }

  async start (): Promise<void> {
    if (this.role === 'seed') return
    const destination = this.opts.join.destination as string
    const dst = this.destinationPlace()
    const kept = await this.opts.journal.getSwarm(this.id)
    const same = kept !== undefined && kept.manifestSha256 === this.manifest.sha256 && kept.destination === destination
    if (same && kept.outcome !== undefined) {
      // Finished before a restart, the report not yet acknowledged: report it, fetch nothing again.
      this.finished = true
      this.outcome = { distributionId: this.id, destination, ...kept.outcome }
      this.opts.log('distribution already finished here; reporting it again', { distributionId: this.id, outcome: kept.outcome.outcome })
      return
    }
    if (same && Bitfield.fromBase64(this.pieces, kept.have).complete() && await this.targetHolds(dst)) {
      // Every piece was journaled and the target holds the file: a crash came between its commit and journaling the outcome.
      this.finished = true
      this.outcome = { distributionId: this.id, destination, outcome: 'succeeded', sha256: this.manifest.sha256 }
      await this.opts.journal.putSwarm({ ...kept, outcome: { outcome: 'succeeded', sha256: this.manifest.sha256 } })
      this.opts.log('distribution already committed here; reporting it', { distributionId: this.id })
      return
    }
    // Without a journal for this manifest the partial's bytes are unknown: start from nothing.
    this.writer = this.manifest.image !== undefined && this.opts.blobs !== undefined
      ? await openImageWriter({ dst, location: destination, key: this.id, manifest: this.manifest, resume: same, index: this.opts.blobs })
      : this.manifest.tree !== undefined
        ? await openTreeWriter({ dst, location: destination, key: this.id, manifest: this.manifest, resume: same })
        : await openPieceWriter(dst, this.id, this.manifest.size, same)
    this.storage = writerStorage(this.writer)
    // An image's blobs (a tree's files) that this agent already holds are not fetched again.
    if (isImageWriter(this.writer)) for (const piece of this.writer.heldPieces()) this.hold(piece)
    if (same && this.writer.resumed) {
      const have = Bitfield.fromBase64(this.pieces, kept.have)
      for (let i = 0; i < this.pieces; i++) if (have.has(i)) this.hold(i)
      // A tree's files whose pieces all came before the restart are placed now, not only at the end.
      if (isTreeWriter(this.writer)) await this.writer.restored([...Array(this.pieces).keys()].filter(i => have.has(i)))
      this.opts.log('distribution resumed from journal', { distributionId: this.id, pieces: this.mine.count(), of: this.pieces })
    }
    await this.journalHave()
    this.stopTicks = (this.opts.every ?? every)(FLUSH_EVERY_MS, () => { void this.tick() })
    if (this.mine.complete()) void this.complete()
  }

  /** A piece is in the target (stored now, or found there at the start): it counts as ours, and is read back to be checked. */
  private hold (piece: number): void {
    if (!this.mine.set(piece)) return
    this.toReadBack.push(piece)
    if (this.readingBack) return
    this.readingBack = true
    this.readBack = this.readBackLoop()
  }

  /**
   * The end-to-end check: every piece is read back through the destination's
   * plug-in and its sha256 compared with the manifest's, as the whole file
   * used to be once every piece was in. The manifest's piece hashes and its
   * whole-file sha256 come from one read of the source at the seed, and the
   * pieces tile the file, so every piece read back intact is the whole file
   * intact; done while the rest arrives, the check no longer adds a read and
   * hash of the whole file after the last piece (about 2 s of a 128 MiB
   * bench:swarm run on a loaded machine; --trace shows it).
   */
  private async readBackLoop (): Promise<void> {
    try {
      for (let piece = this.toReadBack.shift(); piece !== undefined; piece = this.toReadBack.shift()) {
        if (this.closed || this.readBackError !== undefined) return
        const { offset, length } = pieceRange(this.manifest, piece)
        let bytes: Uint8Array
        try {
          bytes = await (this.writer as WriterAt).readAt(offset, length)
        } catch (err) {
          this.readBackFailed(toStaccatoError(err))
          return
        }
        const digest = createHash('sha256').update(bytes).digest('hex')
        if (bytes.byteLength !== length || digest !== this.manifest.pieces[piece]) {
          this.readBackFailed(new ChecksumMismatchError(`${this.opts.join.destination as string}: piece ${piece} reads back as ${bytes.byteLength} bytes hashing to ${digest}, the manifest says ${length} bytes hashing to ${this.manifest.pieces[piece]}`))
          return
        }
        this.readBackCount++
      }
    } finally {
      this.readingBack = false
    }
  }

  /** The target does not hold what was stored: this destination cannot finish, and need not fetch the rest first. */
  private readBackFailed (err: StaccatoError): void {
    this.readBackError = err
    // complete() reports it once it has waited for the reader; after close nothing is reported.
    if (!this.closed && !this.finished) void this.fail(err)
  }

  private destinationPlace (): Resolved {
    return resolveLocal(this.opts.join.destination as string, this.opts.self, this.opts.plugins, 'destination')
  }

  /** Whether the destination's object is the manifest's file (read through its plug-in and hashed). */
  private async targetHolds (dst: Resolved): Promise<boolean> {
    try {
      if ((await dst.plugin.stat(dst.url)).size !== this.manifest.size) return false
      const whole = createHash('sha256')
      for await (const chunk of dst.plugin.read(dst.url, { offset: 0 })) whole.update(chunk)
      return whole.digest('hex') === this.manifest.sha256
    } catch {
      return false
    }
  }

  /** Whether this destination is done (here or before a restart): it fetches nothing more. */
  get isFinished (): boolean {
    return this.finished
  }

  /**
   * A peer passed the hello exchange. `advertised` is the bitfield our hello
   * carried: pieces that landed while the hello was on the wire were
   * announced only to the peers attached then, so they are announced here —
   * without this a peer never learns of them, and when the seed sends it to
   * us for such a piece it waits for a `have` that never comes (a destination
   * stalled on its last piece under load).
   */
  attach (peer: PeerLink, advertised: Bitfield): void {
    const old = this.peers.get(peer.peerId)
    if (old !== undefined) this.detach(old)
    this.peers.set(peer.peerId, peer)
    for (let piece = 0; piece < this.pieces; piece++) {
      // As for every send: a broken stream ends the peer's read loop, which drops it.
      if (this.mine.has(piece) && !advertised.has(piece)) void peer.send({ t: 'have', piece }).catch(() => {})
    }
    this.picker.addPeer(peer.have)
    void peer.run({
      have: (p, piece) => { this.picker.onHave(piece); this.fill(p) },
      request: (p, piece, sole) => { this.enqueueServe(p, piece, sole) },
      cancel: (p, piece) => { this.serveQueues.get(p)?.cancel(piece) },
      reject: (p, piece, _reason, holders) => { this.onReject(p, piece, holders) },
      piece: (p, piece, bytes) => { void this.onPiece(p, piece, bytes) },
      closed: p => { this.detach(p) }
    })
    this.fill(peer)
  }

  private detach (peer: PeerLink): void {
    if (this.peers.get(peer.peerId) !== peer) return
    this.peers.delete(peer.peerId)
    this.serveQueues.delete(peer)
    this.pacer.remove(peer)
    this.picker.removePeer(peer.have, peer.peerId)
    peer.inflight.clear()
    peer.close()
    this.fillAll()
  }

  private fillAll (): void {
    for (const p of this.peers.values()) this.fill(p)
  }

  /** Keeps as many requests in flight to `peer` as its pace gives it (MAX_OUTSTANDING on average). */
  private fill (peer: PeerLink): void {
    if (this.role === 'seed' || this.finished || peer.isClosed) return
    while (peer.inflight.size < this.pacer.depth(peer, MAX_OUTSTANDING)) {
      const piece = this.picker.pick(peer.peerId, peer.have, peer.refused)
      if (piece === undefined) return
      this.pacer.requested(peer, this.now(), peer.inflight.size === 0)
      peer.inflight.add(piece)
      // A send fails only when the peer's stream broke: its read loop then ends, the peer is dropped and its pieces are picked again.
      void peer.send({ t: 'request', piece, sole: peer.soleFor.has(piece) }).catch(() => {})
    }
  }

  /**
   * The seed said no. If it named holders and we reach none of them (we
   * dropped them, or cannot connect), ask the seed again as its sole source;
   * otherwise the piece comes from the holders, or from whoever gets it first.
   */
  private onReject (peer: PeerLink, piece: number, holders: string[]): void {
    peer.inflight.delete(piece)
    this.pacer.ended(peer, peer.inflight.size > 0)
    this.picker.release(piece, peer.peerId)
    const waits = holders.length > 0 ? (this.holderWaits.get(piece) ?? 0) + 1 : 0
    if (holders.length > 0) this.holderWaits.set(piece, waits)
    const view = {
      attached: (h: string) => this.peers.get(h)?.isClosed === false,
      expected: (h: string) => !this.banned.has(h) && !this.unreachable.has(h) && this.opts.join.peers.some(p => p.peerId === h)
    }
    // And only once starved: with a bounded peer set most holders are neither connected nor named to us, and the piece
    // reaches one of our peers a few hops later; asking at once made the seed send pieces two or three times
    // (bench:swarm-sim, N = 100). A dropped (corrupt) holder's pieces are still asked alone, once the rest is in.
    if (askSeedAlone(holders, view, waits) && this.inFlight() === 0) peer.soleFor.add(piece)
    else peer.refused.add(piece)
    this.fillAll()
  }

  private inFlight (): number {
    let n = 0
    for (const p of this.peers.values()) n += p.inflight.size
    return n
  }

  /** The agent's dialer says whether it can reach a participant: a holder we cannot reach is not waited for. */
  setReachable (peerId: string, reachable: boolean): void {
    if (reachable) this.unreachable.delete(peerId)
    else this.unreachable.add(peerId)
  }

  private async onPiece (peer: PeerLink, piece: number, parts: Uint8Array[]): Promise<void> {
    peer.inflight.delete(piece)
    this.pacer.delivered(peer, this.now(), parts.reduce((n, p) => n + p.byteLength, 0), peer.inflight.size > 0)
    if (this.mine.has(piece) || this.finished || piece >= this.pieces) {
      this.picker.release(piece, peer.peerId)
      this.fill(peer)
      return
    }
    const { offset, length } = pieceRange(this.manifest, piece)
    const hash = createHash('sha256')
    let received = 0
    for (const part of parts) {
      hash.update(part)
      received += part.byteLength
    }
    const digest = hash.digest('hex')
    if (received !== length || digest !== this.manifest.pieces[piece]) {
      this.opts.log('peer sent a corrupt piece; dropping it from the distribution', { distributionId: this.id, peer: peer.name, piece })
      this.banned.add(peer.peerId)
      this.opts.counters.swarmPeersDropped++
      this.picker.release(piece, peer.peerId)
      this.detach(peer)
      return
    }
    if (this.opts.download !== undefined) await this.opts.download.take(length)
    try {
      await (this.writer as WriterAt).writeAt(offset, parts)
    } catch (err) {
      this.picker.release(piece, peer.peerId)
      if (!this.closed && !this.finished) await this.fail(toStaccatoError(err))
      return
    }
    if (this.mine.has(piece) || this.finished) {
      // Another peer's copy landed meanwhile.
      this.fill(peer)
      return
    }
    this.opts.cache.put(this.id, piece, parts)
    this.opts.counters.bytesReceived += length
    // One line each, for bench:swarm --trace: where the time between the join and the commit goes.
    if (this.mine.count() === 0) this.opts.log('first piece here', { distributionId: this.id, from: peer.name })
    this.hold(piece)
    this.holderWaits.delete(piece)
    this.dirty = true
    for (const other of this.picker.received(piece)) {
      const p = this.peers.get(other)
      if (p !== undefined && p !== peer) {
        p.inflight.delete(piece)
        this.pacer.ended(p, p.inflight.size > 0)
        // As for requests: a broken stream ends that peer's read loop, which drops it.
        void p.send({ t: 'cancel', piece }).catch(() => {})
      }
    }
    // As for requests: a broken stream ends that peer's read loop, which drops it.
    for (const p of this.peers.values()) void p.send({ t: 'have', piece }).catch(() => {})
    this.statsDirty = true
    if (this.mine.complete()) {
      void this.complete()
    } else {
      this.fillAll()
    }
  }

  private enqueueServe (peer: PeerLink, piece: number, sole: boolean): void {
    if (piece >= this.pieces) {
      // Only a broken or hostile peer asks for a piece the manifest does not have; queueing it would let it grow the queue.
      peer.close(new ProtocolError(`request for piece ${piece} of a ${this.pieces}-piece manifest`))
      return
    }
    if (peer.isClosed) return
    let queue = this.serveQueues.get(peer)
    if (queue === undefined) {
      queue = new ServeQueue()
      this.serveQueues.set(peer, queue)
    }
    queue.push(piece, sole)
    if (!queue.running) void this.serveLoop(peer, queue)
  }

  private async serveLoop (peer: PeerLink, queue: ServeQueue): Promise<void> {
    queue.running = true
    try {
      while (!peer.isClosed && !this.closed) {
        const next = queue.shift()
        if (next === undefined) return
        try {
          await this.serve(peer, next.piece, next.sole)
        } catch (err) {
          this.opts.log('could not serve a piece', { distributionId: this.id, peer: peer.name, piece: next.piece, error: toStaccatoError(err).message })
          peer.close(toStaccatoError(err))
          return
        }
      }
    } finally {
      queue.running = false
    }
  }

  private async serve (peer: PeerLink, piece: number, sole: boolean): Promise<void> {
    if (!this.mine.has(piece)) {
      await peer.send({ t: 'reject', piece, reason: 'not here' })
      return
    }
    const refusal = this.role === 'seed' ? this.seedRefusal(peer, piece, sole) : undefined
    if (refusal !== undefined) {
      await peer.send({ t: 'reject', piece, reason: refusal.reason, holders: refusal.holders })
      return
    }
    // Claimed before the (rate-limited) send, so that a concurrent request for the same piece is refused meanwhile.
    const fresh = this.role === 'seed' && !this.sentTo.has(piece)
    if (this.role === 'seed') this.sentTo.set(piece, peer.peerId)
    let parts: Uint8Array[]
    try {
      parts = await this.readPiece(piece)
    } catch (err) {
      if (this.role === 'seed') await this.seedCannotRead(toStaccatoError(err))
      throw err
    }
    const { length } = pieceRange(this.manifest, piece)
    await this.turns.turn(() => ({ holders: this.picker.holders(piece), askerPieces: peer.have.count() }))
    // Gone, or it got the piece elsewhere while it waited (its `have` came): what we would send is thrown away.
    const moot = this.closed || peer.isClosed || peer.have.has(piece)
    try {
      if (!moot && this.opts.upload !== undefined) await this.opts.upload.take(length)
    } finally {
      this.turns.done()
    }
    if (moot) return
    await peer.send({ t: 'piece', piece, length }, parts)
    // One line each, for bench:swarm --trace: how soon the seed's upload starts, and when every piece has left it once.
    if (fresh && (++this.sentNew === 1 || this.sentNew === this.pieces)) this.opts.log(this.sentNew === 1 ? 'seed sent its first piece' : 'seed sent its last new piece', { distributionId: this.id, to: peer.name })
    this.opts.counters.bytesServed += length
    this.served.set(peer.peerId, (this.served.get(peer.peerId) ?? 0) + length)
    this.statsDirty = true
    this.opts.counters.swarmPiecesServed++
  }

  /** The seed's answer to a request for a piece it sent before (super-seed.ts decides). */
  private seedRefusal (asker: PeerLink, piece: number, sole: boolean): { reason: string, holders?: string[] } | undefined {
    const sentTo = this.sentTo.get(piece)
    if (sentTo === undefined) return undefined
    const holders = [...this.peers.values()].filter(p => p !== asker && p.have.has(piece)).map(p => p.peerId)
    const recipient = this.peers.get(sentTo)
    return seedRefusal({ sentTo, holders, sole, recipientElsewhere: recipient !== undefined && recipient !== asker && !recipient.isClosed })
  }

  /**
   * The source changed under the manifest, or is gone: no destination can
   * finish, so the seed says so once and the coordinator fails the
   * distribution with this error. A passing failure (a network error from an
   * http source) is left to the peers' next request.
   */
  private async seedCannotRead (err: StaccatoError): Promise<void> {
    if (this.seedFailed || (err.retryable && !(err instanceof SourceChangedError))) return
    this.seedFailed = true
    this.opts.log('the seed cannot read the source; the distribution fails', { distributionId: this.id, code: err.code, error: err.message })
    await this.opts.report({ distributionId: this.id, outcome: 'failed', error: err.toJSON() }).catch(e => {
      this.opts.log('could not report the failure; the stalled-transfer check will', { distributionId: this.id, error: toStaccatoError(e).message })
    })
  }

  /** The piece's bytes, from the cache or else read (and cached); never changed by callers. */
  private async readPiece (piece: number): Promise<Uint8Array[]> {
    const cached = this.opts.cache.get(this.id, piece)
    if (cached !== undefined) return cached
    // A read during the commit failed, and the serve loop dropped the peer that asked (seen in bench:swarm's tail,
    // where the commit's fsync of 256 MiB takes a while): wait for it. A failed commit fails the session; the read says how.
    await this.committing?.catch(() => {})
    const { offset, length } = pieceRange(this.manifest, piece)
    const parts = await (this.storage as PieceStorage).read(offset, length)
    const got = parts.reduce((n, p) => n + p.byteLength, 0)
    // A source shorter than its manifest changed under it.
    if (got !== length) throw new SourceChangedError(`short read of piece ${piece}: ${got} of ${length} bytes`)
    this.opts.cache.put(this.id, piece, parts)
    return parts
  }

  private async tick (): Promise<void> {
    await this.flush().catch(err => this.opts.log('could not journal pieces', { distributionId: this.id, error: String(err) }))
    // A piece a peer refused (the seed sends each piece once first) may be all that is left: ask again.
    for (const p of this.peers.values()) {
      p.refused.clear()
      p.soleFor.clear()
    }
    this.fillAll()
  }

  /** Syncs the partial, then journals which pieces it holds: the journal never names a piece that is not on disk. */
  private async flush (): Promise<void> {
    if (!this.dirty || this.writer === undefined || this.closed || this.finished) return
    this.dirty = false
    await this.writer.sync()
    await this.journalHave()
    this.opts.progress({ distributionId: this.id, destination: this.opts.join.destination as string, bytesDone: this.bytesDone(), ...this.filesDone() })
  }

  /** A tree's files in place so far, for the coordinator's counts. */
  private filesDone (): { filesDone?: number } {
    return this.writer !== undefined && isTreeWriter(this.writer) ? { filesDone: this.writer.filesDone() } : {}
  }

  private entry (): SwarmEntry {
    return { distributionId: this.id, destination: this.opts.join.destination as string, manifestSha256: this.manifest.sha256, have: this.mine.toBase64() }
  }

  private async journalHave (): Promise<void> {
    // Checked when the write is issued: once finished, the outcome is journaled and must not be overwritten.
    if (this.finished) return
    await this.opts.journal.putSwarm(this.entry())
  }

  /** What changed since the last call, for the coordinator's swarm view; undefined when nothing did. */
  stats (): ControlParams<'swarmStats'> | undefined {
    if (!this.statsDirty) return undefined
    this.statsDirty = false
    // The busiest peers first: the message holds 64, as many as a participant is told about.
    const served = [...this.served].sort((a, b) => b[1] - a[1]).slice(0, 64).map(([peerId, bytes]) => ({ peerId, bytes }))
    return { distributionId: this.id, ...(this.role === 'destination' ? { have: this.mine.toBase64() } : {}), served }
  }

  bytesDone (): number {
    let done = 0
    for (let i = 0; i < this.pieces; i++) if (this.mine.has(i)) done += pieceRange(this.manifest, i).length
    return done
  }

  /** All pieces are here: once each has been read back and checked, commit the object to the target. */
  private async complete (): Promise<void> {
    if (this.finished) return
    this.finished = true
    this.stopTicks?.()
    const destination = this.opts.join.destination as string
    this.opts.log('every piece here; checking the whole file', { distributionId: this.id })
    try {
      const writer = this.writer as WriterAt
      await this.readBack
      if (this.readBackError !== undefined) throw this.readBackError
      // Every piece goes through hold() once: a path that skipped it would leave part of the file unchecked.
      if (this.readBackCount !== this.pieces) throw new ChecksumMismatchError(`${destination}: ${this.readBackCount} of ${this.pieces} pieces were read back and checked`)
      this.opts.log('every piece read back intact', { distributionId: this.id })
      await writer.sync()
      const sha256 = this.manifest.sha256
      // Every piece, journaled before the commit: a crash between the commit and journaling the outcome
      // leaves a journal that sends the restarted agent to check the target rather than fetch it again.
      await this.opts.journal.putSwarm(this.entry())
      this.committing = writer.commit()
      await this.committing
      this.opts.log('distribution complete here', { distributionId: this.id, destination, sha256 })
      this.opts.progress({ distributionId: this.id, destination, bytesDone: this.manifest.size, ...this.filesDone() })
      await this.finish({ distributionId: this.id, destination, outcome: 'succeeded', sha256 })
    } catch (err) {
      await this.fail(toStaccatoError(err))
    }
  }

  /** This destination cannot finish (a failed write, a bad assembled file, a refused commit). */
  private async fail (e: StaccatoError): Promise<void> {
    this.finished = true
    this.stopTicks?.()
    const destination = this.opts.join.destination as string
    this.opts.log('distribution failed here', { distributionId: this.id, destination, code: e.code, error: e.message })
    await this.finish({ distributionId: this.id, destination, outcome: 'failed', error: e.toJSON() })
  }

  /** Journals the outcome first, so that it reaches the coordinator even if it is away right now, then reports it. */
  private async finish (outcome: ControlParams<'swarmReport'>): Promise<void> {
    this.outcome = outcome
    const { sha256, error } = outcome
    await this.opts.journal.putSwarm({ ...this.entry(), outcome: { outcome: outcome.outcome, sha256, error } }).catch(err => {
      this.opts.log('could not journal the outcome', { distributionId: this.id, error: toStaccatoError(err).message })
    })
    await this.deliverOutcome()
  }

  /**
   * Sends the outcome; called again when the coordinator re-sends the join
   * after a reconnect, and after every registration. One report at a time:
   * the journal entry goes once the coordinator has acknowledged it.
   */
  async deliverOutcome (): Promise<void> {
    if (this.outcome === undefined || this.reported) return
    this.delivering ??= this.report(this.outcome).finally(() => { this.delivering = undefined })
    await this.delivering
  }

  private async report (outcome: ControlParams<'swarmReport'>): Promise<void> {
    try {
      await this.opts.report(outcome)
      this.reported = true
      await this.opts.journal.removeSwarm(this.id)
    } catch (err) {
      this.opts.log('could not report the outcome yet; it is sent again when the coordinator rejoins us', { distributionId: this.id, error: toStaccatoError(err).message })
    }
  }

  /**
   * Stops serving. `removePartial` drops the partial object (canceled or
   * failed here); `ended` says the coordinator ended the distribution for this
   * agent, so nothing is left to resume or report and the journal entry goes.
   */
  async close (removePartial: boolean, ended = removePartial): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.stopTicks?.()
    this.opts.cache.forget(this.id)
    for (const p of this.peers.values()) p.close()
    this.peers.clear()
    // A failed flush costs only the pieces it would have journaled: the next join fetches them again.
    if (!this.finished && !removePartial) await this.flush().catch(() => {})
    await this.delivering
    await this.release(removePartial).catch(err => {
      this.opts.log('could not remove the partial', { distributionId: this.id, error: toStaccatoError(err).message })
    })
    if (ended) await this.opts.journal.removeSwarm(this.id)
  }

  private async release (removePartial: boolean): Promise<void> {
    if (this.writer !== undefined) await this.writer.abort({ keepPartial: !removePartial })
    // No writer: a session restored finished after a restart, whose partial may still be there.
    // A tree's partials are one per file, and none is left once it finished.
    else if (removePartial && this.role === 'destination' && this.manifest.tree === undefined) await discardPartial(this.destinationPlace(), this.id)
  }
}
