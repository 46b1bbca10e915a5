import { Bitfield } from '../bitfield.ts'
import { ENDGAME_PIECES, PiecePicker } from '../picker.ts'
import { seedRefusal } from '../super-seed.ts'
import { askSeedAlone } from '../sole.ts'
import { RequestPacer } from '../pace.ts'
import { nextToServe } from '../serve-order.ts'
import { TokenLedger, defaultBurst } from '../../rate-limit.ts'
import { EventQueue } from './heap.ts'
import type { HostSpec } from './scenario.ts'

/**
 * The swarm's policy in virtual time: the agent's own PiecePicker (rarest
 * first, endgame), Bitfield, super-seeding and sole-source rules and token buckets, and the
 * coordinator's peer-set selection (passed in as `tracker`), over hosts whose
 * links are modelled a piece at a time. The glue mirrors SwarmSession (fill,
 * reject, piece, tick) and the service's dial rule; it is the one copy the
 * simulator keeps of them.
 *
 * Bandwidth: as in an agent, a host's upload is one token bucket at its
 * capacity that every serve loop (one per peer) takes a whole piece from
 * before sending, and a destination takes a received piece from its download
 * bucket before storing it; a piece then takes the link's latency. So a
 * host's capacity is shared among its peers piece by piece, in the order they
 * asked, not byte by byte.
 */

/**
 * Asks the tracker for `self`'s peers among `others` (host ids, 0 is the seed); `prefer` go first;
 * `previous`, the list it was named last time (undefined on its first join), as the coordinator remembers it.
 */
export type Tracker = (self: number, others: readonly number[], prefer: readonly number[], previous: readonly number[] | undefined) => number[]

export interface SimConfig {
  size: number
  pieceSize: number
  seed: HostSpec
  hosts: HostSpec[]
  tracker: Tracker
  /** Requests in flight to one peer (the session's MAX_OUTSTANDING). */
  maxOutstanding: number
  random: () => number
  /** The session's tick (journal, clear refusals) and the service's redial period, in ms. */
  tickMs: number
  redialMs: number
  /** Stop after this many events, or this much virtual time, whatever happens. */
  maxEvents: number
  maxTimeMs: number
  /**
   * A destination's hashing speed in bytes per second: each piece is hashed
   * before it is stored and once more when read back from the target (one
   * hash at a time per host), as SwarmSession does. Infinity (the default)
   * leaves CPU out.
   */
  verifyBytesPerSec?: number
}

export interface SimOutcome {
  /** Per destination, ms from the start to its last piece; undefined when it did not finish (a corrupt one may not, and is not waited for). */
  completion: Array<number | undefined>
  /** Bytes each host served; [0] is the seed. */
  served: number[]
  wastedDuplicate: number
  wastedCorrupt: number
  trackerMessages: number
  events: number
  endMs: number
}

interface View {
  readonly self: Host
  readonly peer: Host
  readonly key: string
  readonly have: Bitfield
  readonly inflight: Set<number>
  readonly refused: Set<number>
  readonly soleFor: Set<number>
  readonly queue: Array<{ piece: number, sole: boolean }>
  /** The request this view's serve loop waits to send, once the host's upload turn comes (UploadTurns). */
  ready?: { piece: number, length: number }
  serving: boolean
  open: boolean
}

interface Host {
  readonly id: number
  readonly spec: HostSpec
  readonly rank: number
  readonly mine: Bitfield
  readonly picker: PiecePicker
  readonly views: Map<number, View>
  readonly banned: Set<number>
  readonly sentTo: Map<number, number>
  readonly upload: TokenLedger
  readonly download: TokenLedger
  readonly pacer: RequestPacer<number>
  /** The serve holding the upload's turn, and those waiting for it (SwarmSession's UploadTurns). */
  turnBusy: boolean
  readonly turnWaiting: View[]
  /** When this host's CPU is done with the pieces it is hashing (virtual ms). */
  cpuFreeAt: number
  /** Refusals of each missing piece that named holders we are not connected to (the session's holderWaits). */
  readonly holderWaits: Map<number, number>
  listed: number[]
  joined: boolean
  online: boolean
  dirty: boolean
  done?: number
}

export function simulate (cfg: SimConfig): SimOutcome {
  const q = new EventQueue()
  const pieces = Math.ceil(cfg.size / cfg.pieceSize)
  const lengthOf = (p: number): number => Math.min(cfg.pieceSize, cfg.size - p * cfg.pieceSize)
  const specs = [cfg.seed, ...cfg.hosts]
  const hosts: Host[] = specs.map((spec, id) => {
    const mine = id === 0 ? Bitfield.full(pieces) : new Bitfield(pieces)
    return {
      id, spec, rank: cfg.random(), mine, picker: new PiecePicker(mine, cfg.random), views: new Map(), banned: new Set(), sentTo: new Map(), holderWaits: new Map(),
      upload: new TokenLedger(spec.up, defaultBurst(spec.up), 0), download: new TokenLedger(spec.down, defaultBurst(spec.down), 0), pacer: new RequestPacer(),
      listed: [], joined: false, cpuFreeAt: 0, online: false, dirty: false, turnBusy: false, turnWaiting: []
    }
  })
  const served = new Array<number>(hosts.length).fill(0)
  let wastedDuplicate = 0
  let wastedCorrupt = 0
  let trackerMessages = 0
  // The run ends when every honest destination is done: a corrupt one is banned by every peer it serves and may
  // never finish, and nobody waits for it.
  let remaining = cfg.hosts.filter(h => !h.corrupt).length
  const latency = (a: Host, b: Host): number => a.spec.latencyMs + b.spec.latencyMs
  const verifyRate = cfg.verifyBytesPerSec ?? Infinity
  const hashMs = (bytes: number): number => verifyRate === Infinity ? 0 : bytes / verifyRate * 1000

  /** Delivers `fn` at `to` after the link's latency, if the link (this very view of it) is still open then. */
  function send (from: View, fn: (at: View) => void): void {
    q.after(latency(from.self, from.peer), () => {
      const at = from.peer.views.get(from.self.id)
      if (from.open && at !== undefined && at.open) fn(at)
    })
  }

  // --- tracker and links (coordinator's DistributionManager, the service's dial rule) ---

  function join (h: Host, prefer: readonly number[]): number[] {
    trackerMessages++
    const others = hosts.filter(o => o !== h && o.online).map(o => o.id)
    h.listed = cfg.tracker(h.id, others, prefer, h.joined ? h.listed : undefined)
    h.joined = true
    dialListed(h)
    return h.listed
  }

  function dialListed (h: Host): void {
    if (h.id === 0 || !h.online) return
    for (const id of h.listed) {
      const o = hosts[id]
      // Between two destinations only the lower peer id dials; everyone dials the seed; the seed dials nobody.
      if (id === 0 || h.rank < o.rank) connect(h, o)
    }
  }

  function connect (a: Host, b: Host): void {
    if (!a.online || !b.online || a.views.has(b.id) || a.banned.has(b.id) || b.banned.has(a.id)) return
    const ab = view(a, b)
    const ba = view(b, a)
    a.views.set(b.id, ab)
    b.views.set(a.id, ba)
    a.picker.addPeer(ab.have)
    b.picker.addPeer(ba.have)
    fill(ab)
    fill(ba)
  }

  function view (self: Host, peer: Host): View {
    // The hello carries the bitfield as it is now.
    const have = new Bitfield(pieces, peer.mine.bytes)
    return { self, peer, key: String(peer.id), have, inflight: new Set(), refused: new Set(), soleFor: new Set(), queue: [], serving: false, open: true }
  }

  /** A link closes (a peer left, or was dropped): both ends detach, as each session does when its stream ends. */
  function disconnect (a: Host, b: Host): void {
    for (const [x, y] of [[a, b], [b, a]]) {
      const v = x.views.get(y.id)
      if (v === undefined) continue
      v.open = false
      x.views.delete(y.id)
      x.picker.removePeer(v.have, v.key)
      x.pacer.remove(y.id)
      v.inflight.clear()
    }
    fillAll(a)
    fillAll(b)
  }

  // --- a destination asking (SwarmSession.fill, onReject, onPiece) ---

  function fillAll (h: Host): void {
    for (const v of h.views.values()) fill(v)
  }

  function fill (v: View): void {
    const h = v.self
    if (h.id === 0 || h.done !== undefined || !v.open) return
    while (v.inflight.size < h.pacer.depth(v.peer.id, cfg.maxOutstanding)) {
      const piece = h.picker.pick(v.key, v.have, v.refused)
      if (piece === undefined) return
      h.pacer.requested(v.peer.id, q.now, v.inflight.size === 0)
      v.inflight.add(piece)
      const sole = v.soleFor.has(piece)
      send(v, at => { enqueueServe(at, piece, sole) })
    }
  }

  function inFlight (h: Host): number {
    let n = 0
    for (const v of h.views.values()) n += v.inflight.size
    return n
  }

  function onReject (v: View, piece: number, holders: string[]): void {
    v.inflight.delete(piece)
    v.self.pacer.ended(v.peer.id, v.inflight.size > 0)
    v.self.picker.release(piece, v.key)
    const h = v.self
    const waits = holders.length > 0 ? (h.holderWaits.get(piece) ?? 0) + 1 : 0
    if (holders.length > 0) h.holderWaits.set(piece, waits)
    const view = {
      attached: (id: string) => h.views.get(Number(id))?.open === true,
      expected: (id: string) => !h.banned.has(Number(id)) && h.listed.includes(Number(id))
    }
    if (askSeedAlone(holders, view, waits) && inFlight(h) === 0) v.soleFor.add(piece)
    else v.refused.add(piece)
    fillAll(v.self)
  }

  function onPiece (v: View, piece: number, corrupt: boolean): void {
    const h = v.self
    const length = lengthOf(piece)
    v.inflight.delete(piece)
    h.pacer.delivered(v.peer.id, q.now, length, v.inflight.size > 0)
    if (h.mine.has(piece) || h.done !== undefined) {
      wastedDuplicate += length
      h.picker.release(piece, v.key)
      fill(v)
      return
    }
    if (corrupt) {
      wastedCorrupt += length
      h.banned.add(v.peer.id)
      h.picker.release(piece, v.key)
      disconnect(h, v.peer)
      return
    }
    const hashed = (): void => { q.after(h.download.reserve(length, q.now), () => { stored(v, piece, length) }) }
    if (hashMs(length) === 0) {
      hashed()
      return
    }
    h.cpuFreeAt = Math.max(q.now, h.cpuFreeAt) + hashMs(length)
    q.at(h.cpuFreeAt, hashed)
  }

  function stored (v: View, piece: number, length: number): void {
    const h = v.self
    if (h.mine.has(piece) || h.done !== undefined) {
      // Another peer's copy landed meanwhile.
      wastedDuplicate += length
      fill(v)
      return
    }
    h.mine.set(piece)
    // Read back from the target and hashed once more (SwarmSession.readBackLoop), on the host's one CPU.
    if (hashMs(length) > 0) h.cpuFreeAt = Math.max(q.now, h.cpuFreeAt) + hashMs(length)
    h.holderWaits.delete(piece)
    h.dirty = true
    const freed: View[] = [v]
    for (const other of h.picker.received(piece)) {
      const o = h.views.get(Number(other))
      if (o !== undefined && o !== v) {
        o.inflight.delete(piece)
        h.pacer.ended(o.peer.id, o.inflight.size > 0)
        freed.push(o)
        send(o, at => { cancel(at, piece) })
      }
    }
    announce(h, piece)
    if (h.mine.complete()) {
      // Done fetching now; done for its user once the pieces still waiting to be read back are checked.
      h.done = Math.max(q.now, h.cpuFreeAt)
      q.at(h.done, () => { if (!h.spec.corrupt) remaining-- })
      trackerMessages++
    } else if (pieces - h.mine.count() <= ENDGAME_PIECES) {
      fillAll(h)
    } else {
      // The session fills every peer here; only the links whose requests just ended can ask for more
      // (a piece we now have adds no candidate elsewhere) until the endgame, so only they are filled: same picks, far fewer scans.
      for (const f of freed) fill(f)
    }
  }

  /** One `have` to every peer; sent as one event at the sender's own latency ×2 (an average link), not one per peer. */
  function announce (h: Host, piece: number): void {
    q.after(2 * h.spec.latencyMs, () => {
      for (const v of h.views.values()) {
        const at = v.peer.views.get(h.id)
        if (at === undefined || !at.open || !at.have.set(piece)) continue
        at.self.picker.onHave(piece)
        // A have for a piece the peer already holds cannot give it anything new to ask for.
        if (!at.self.mine.has(piece)) fill(at)
      }
    })
  }

  // --- a host serving (SwarmSession.enqueueServe, serveLoop, serve, seedRefusal) ---

  function enqueueServe (v: View, piece: number, sole: boolean): void {
    v.queue.push({ piece, sole })
    serveNext(v)
  }

  function cancel (v: View, piece: number): void {
    const i = v.queue.findIndex(x => x.piece === piece)
    if (i >= 0) v.queue.splice(i, 1)
  }

  function serveNext (v: View): void {
    const h = v.self
    while (!v.serving && v.open && h.online) {
      const next = v.queue.shift()
      if (next === undefined) return
      const { piece, sole } = next
      if (!h.mine.has(piece)) {
        send(v, at => { onReject(at, piece, []) })
        continue
      }
      if (h.id === 0) {
        const sentTo = h.sentTo.get(piece)
        const holders = sentTo === undefined ? [] : [...h.views.values()].filter(w => w !== v && w.have.has(piece)).map(w => w.key)
        const recipient = sentTo === undefined ? undefined : h.views.get(sentTo)
        const refusal = seedRefusal({ sentTo: sentTo === undefined ? undefined : String(sentTo), holders, sole, recipientElsewhere: recipient !== undefined && recipient !== v && recipient.open })
        if (refusal !== undefined) {
          send(v, at => { onReject(at, piece, refusal.holders ?? []) })
          continue
        }
        h.sentTo.set(piece, v.peer.id)
      }
      v.serving = true
      v.ready = { piece, length: lengthOf(piece) }
      h.turnWaiting.push(v)
      nextTurn(h)
    }
  }

  /** The host's upload goes to one waiting serve at a time, in nextToServe's order (SwarmSession.serve). */
  function nextTurn (h: Host): void {
    while (!h.turnBusy && h.turnWaiting.length > 0) {
      const i = nextToServe(h.turnWaiting.map(w => ({ holders: h.picker.holders((w.ready as { piece: number }).piece), askerPieces: w.have.count() }))) as number
      const [v] = h.turnWaiting.splice(i, 1)
      const { piece, length } = v.ready as { piece: number, length: number }
      v.ready = undefined
      if (!v.open || !h.online || v.have.has(piece)) {
        // Gone, or it got the piece elsewhere while it waited: nothing is sent.
        v.serving = false
        if (v.open) serveNext(v)
        continue
      }
      h.turnBusy = true
      q.after(h.upload.reserve(length, q.now), () => {
        h.turnBusy = false
        v.serving = false
        if (v.open) {
          served[h.id] += length
          const corrupt = h.spec.corrupt
          send(v, at => { onPiece(at, piece, corrupt) })
          serveNext(v)
        }
        nextTurn(h)
      })
    }
  }

  // --- time: ticks, redials, churn ---

  function tick (h: Host): void {
    if (!h.online) return
    if (h.dirty && h.done === undefined) {
      // The session's progress report to the coordinator.
      h.dirty = false
      trackerMessages++
    }
    let cleared = false
    for (const v of h.views.values()) {
      if (v.refused.size > 0 || v.soleFor.size > 0) cleared = true
      v.refused.clear()
      v.soleFor.clear()
    }
    // Nothing cleared and nothing else changed: fill would find what it found last time.
    if (cleared) fillAll(h)
  }

  function periodic (h: Host, phase: number): void {
    let n = 0
    const step = (): void => {
      if (remaining === 0) return
      tick(h)
      if (++n % Math.max(1, Math.round(cfg.redialMs / cfg.tickMs)) === 0) dialListed(h)
      q.after(cfg.tickMs, step)
    }
    q.after(phase, step)
  }

  function comeOnline (h: Host, first: boolean): void {
    h.online = true
    if (first && h.spec.joinAt === 0) return
    // The coordinator's onAgentOnline: the agent joins, then the peers it was given are told about it.
    for (const other of join(h, [])) {
      const o = hosts[other]
      if (o.id !== 0) join(o, [h.id])
    }
  }

  function leave (h: Host): void {
    h.online = false
    for (const id of [...h.views.keys()]) disconnect(h, hosts[id])
  }

  hosts[0].online = true
  for (const h of hosts.slice(1)) {
    if (h.spec.joinAt === 0) h.online = true
  }
  // The coordinator's start: every participant online joins.
  for (const h of hosts) if (h.online) join(h, [])
  for (const h of hosts.slice(1)) {
    const spec = h.spec
    if (spec.joinAt > 0) q.at(spec.joinAt, () => { comeOnline(h, true) })
    if (spec.leaveAt !== undefined) q.at(spec.leaveAt, () => { leave(h) })
    if (spec.returnAt !== undefined) q.at(spec.returnAt, () => { comeOnline(h, false) })
    periodic(h, cfg.random() * cfg.tickMs)
  }
  const events = q.run(() => remaining === 0 || q.now > cfg.maxTimeMs, cfg.maxEvents)
  return {
    completion: hosts.slice(1).map(h => h.done),
    served,
    wastedDuplicate,
    wastedCorrupt,
    trackerMessages,
    events,
    endMs: q.now
  }
}
