import { afterEach, beforeEach, describe, it, expect, vi } from 'vitest'
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ControlParams, Manifest } from '../../mesh/index.ts'
import type { ProtocolPlugin, WriterAt } from '../../protocols/index.ts'
import { Journal } from '../../agent/journal.ts'
import { newCounters } from '../../agent/counters.ts'
import { TokenBucket } from '../../agent/rate-limit.ts'
import type { Clock } from '../../agent/copy/clock.ts'
import { Bitfield } from '../../agent/swarm/bitfield.ts'
import { PieceCache } from '../../agent/swarm/piece-cache.ts'
import { MAX_OUTSTANDING, SwarmSession } from '../../agent/swarm/session.ts'
import type { Outgoing, PeerEvents, PeerLink } from '../../agent/swarm/peer-link.ts'
import mem from '../fixtures/plugins/mem.ts'

const PIECE = 8
const DATA = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyzABCD') // 40 bytes: five pieces of 8
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const MANIFEST: Manifest = {
  size: DATA.length, mtime: 0, pieceSize: PIECE, sha256: sha(DATA),
  pieces: Array.from({ length: 5 }, (_, i) => sha(DATA.subarray(i * PIECE, (i + 1) * PIECE)))
}
const piece = (i: number): Uint8Array => Uint8Array.from(DATA.subarray(i * PIECE, (i + 1) * PIECE))

/** Another participant as the session sees it: records what the session sends, and delivers what the test says. */
class FakePeer implements PeerLink {
  readonly peerId: string
  readonly name: string
  readonly have: Bitfield
  readonly inflight = new Set<number>()
  readonly refused = new Set<number>()
  readonly soleFor = new Set<number>()
  readonly sent: Outgoing[] = []
  private events?: PeerEvents
  private closed = false
  private ended?: () => void

  constructor (peerId: string, have: Bitfield) {
    this.peerId = peerId
    this.name = peerId
    this.have = have
  }

  get isClosed (): boolean { return this.closed }
  async send (msg: Outgoing): Promise<void> { if (!this.closed) this.sent.push(msg) }
  async run (events: PeerEvents): Promise<void> {
    this.events = events
    await new Promise<void>(resolve => { this.ended = resolve })
    events.closed(this)
  }

  close (): void {
    this.closed = true
    this.ended?.()
  }

  requested (): number[] { return this.sent.flatMap(m => m.t === 'request' ? [m.piece] : []) }
  deliver (i: number, bytes = piece(i)): void { this.events?.piece(this, i, [bytes]) }
  ask (i: number): void { this.events?.request(this, i, false) }
  piecesSent (): number[] { return this.sent.flatMap(m => m.t === 'piece' ? [m.piece] : []) }
  reject (i: number, holders: string[]): void { this.events?.reject(this, i, 'fetch it there', holders) }
  soleRequests (): number[] { return this.sent.flatMap(m => m.t === 'request' && m.sole === true ? [m.piece] : []) }
}

let dir: string
let journal: Journal
let plugin: ProtocolPlugin
const ticks: Array<() => void> = []
const reports: Array<ControlParams<'swarmReport'>> = []

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'swarm-session-'))
  journal = await Journal.open(dir)
  plugin = mem()
  ticks.length = 0
  reports.length = 0
})

afterEach(async () => {
  await journal.close()
  await rm(dir, { recursive: true, force: true })
})

function session (manifest = MANIFEST, now?: () => number, upload?: TokenBucket, cacheBytes = 1 << 20): SwarmSession {
  return new SwarmSession({
    upload,
    join: { distributionId: 'd1', role: 'destination', source: 'agent://seed/vol/image', destination: 'mem://dst/image', manifest, peers: [], ticket: 't' },
    now,
    self: 'dst',
    plugins: { volumes: plugin, byScheme: new Map([['mem', plugin]]) },
    journal,
    counters: newCounters(),
    cache: new PieceCache(cacheBytes),
    // The test is the clock: a tick runs when the test calls it.
    every: (_ms, fn) => { ticks.push(fn); return () => { ticks.splice(ticks.indexOf(fn), 1) } },
    log: () => {},
    progress: () => {},
    report: async r => { reports.push(r) }
  })
}

const full = (): Bitfield => Bitfield.full(5)
/** The bitfield our hello carried: what the session held when the link came up. */
const hello = (s: SwarmSession): Bitfield => new Bitfield(5, s.mine.bytes)
const until = async (check: () => boolean): Promise<void> => { await vi.waitFor(() => { if (!check()) throw new Error('not yet') }, { timeout: 900, interval: 2 }) }

/** Hands the session each piece `seed` is asked for, `limit` pieces at most, and waits until each is stored; the pieces in the order handed. */
async function deliverRequested (s: SwarmSession, seed: FakePeer, limit = 5): Promise<number[]> {
  const delivered: number[] = []
  for (let round = 0; round < 5 && delivered.length < limit; round++) {
    for (const p of seed.requested()) if (!delivered.includes(p) && delivered.length < limit) { delivered.push(p); seed.deliver(p) }
    await until(() => delivered.every(p => s.mine.has(p)))
  }
  return delivered
}

describe('SwarmSession (destination), with fake peers and a test-driven clock', () => {
  it('tells a newly attached peer of the pieces that landed while our hello was on the wire, and only those', async () => {
    const s = session()
    await s.start()
    s.mine.set(1)
    const advertised = hello(s)
    // Verified between the hello's snapshot and the attach: announced then only to the peers attached at the time.
    s.mine.set(3)
    s.mine.set(4)
    const peer = new FakePeer('b', new Bitfield(5))
    s.attach(peer, advertised)
    expect(peer.sent.filter(m => m.t === 'have')).toEqual([{ t: 'have', piece: 3 }, { t: 'have', piece: 4 }])
    await s.close(true)
  })

  it('asks a peer for up to MAX_OUTSTANDING pieces, stores a verified piece and announces it', async () => {
    const s = session()
    await s.start()
    const seed = new FakePeer('seed', full())
    const other = new FakePeer('other', new Bitfield(5))
    s.attach(other, hello(s))
    s.attach(seed, hello(s))
    expect(seed.requested()).toHaveLength(MAX_OUTSTANDING)
    const first = seed.requested()[0]
    seed.deliver(first)
    await until(() => s.mine.has(first))
    expect(other.sent).toContainEqual({ t: 'have', piece: first })
    // The slot it freed is used again at once.
    expect(seed.requested()).toHaveLength(MAX_OUTSTANDING + 1)
    await s.close(true)
  })

  it('keeps more requests in flight to a peer that delivers faster than the others, fewer to the slow ones', async () => {
    const pieces = 64
    const data = Uint8Array.from({ length: pieces * PIECE }, (_, i) => (i * 7 + 3) & 0xff)
    const bytes = (i: number): Uint8Array => data.slice(i * PIECE, (i + 1) * PIECE)
    const manifest: Manifest = { size: data.length, mtime: 0, pieceSize: PIECE, sha256: sha(data), pieces: Array.from({ length: pieces }, (_, i) => sha(bytes(i))) }
    let clock = 0
    const s = session(manifest, () => clock)
    await s.start()
    const [fast, slow1, slow2] = ['fast', 'slow1', 'slow2'].map(id => new FakePeer(id, Bitfield.full(pieces)))
    for (const p of [fast, slow1, slow2]) s.attach(p, new Bitfield(pieces, s.mine.bytes))
    expect([fast, slow1, slow2].map(p => p.inflight.size)).toEqual([MAX_OUTSTANDING, MAX_OUTSTANDING, MAX_OUTSTANDING])
    const give = async (p: FakePeer): Promise<void> => {
      const i = [...p.inflight][0]
      p.deliver(i, bytes(i))
      await until(() => s.mine.has(i))
    }
    // The fast peer answers every 10 ms, the slow ones every 80 ms: rates 8 : 1 : 1.
    for (let t = 1; t <= 16; t++) {
      clock = t * 10
      await give(fast)
      if (t % 8 === 0) {
        await give(slow1)
        await give(slow2)
      }
    }
    // Two per peer on average, shared by rate: 2 × 0.8 ÷ 0.33 ≈ 5 for the fast one, 2 × 0.1 ÷ 0.33 ≈ 1 for the slow.
    expect(fast.inflight.size).toBe(5)
    expect(slow1.inflight.size).toBe(1)
    expect(slow2.inflight.size).toBe(1)
    await s.close(true)
  })

  it('rejects a corrupt piece and drops the peer that sent it for the rest of the distribution', async () => {
    const s = session()
    await s.start()
    const bad = new FakePeer('bad', full())
    s.attach(bad, hello(s))
    const asked = bad.requested()[0]
    bad.deliver(asked, Buffer.from('XXXXXXXX'))
    await until(() => bad.isClosed)
    expect(s.mine.has(asked)).toBe(false)
    expect(s.banned.has('bad')).toBe(true)
    expect(s.peers.has('bad')).toBe(false)
    // The piece is free to be asked of another peer (a few at once, then more as slots free).
    const good = new FakePeer('good', full())
    s.attach(good, hello(s))
    for (let i = 0; i < 5 && !good.requested().includes(asked); i++) {
      const p = good.requested()[i]
      good.deliver(p)
      await until(() => s.mine.has(p))
    }
    expect(good.requested()).toContain(asked)
    await s.close(true)
  })

  it('in the endgame asks a second peer for a piece in flight, and cancels the slower copy', async () => {
    const s = session()
    await s.start()
    const a = new FakePeer('a', full())
    const b = new FakePeer('b', full())
    s.attach(a, hello(s))
    s.attach(b, hello(s))
    const fromA = new Set(a.requested())
    // b delivers what it is asked for until the endgame (four missing, all asked for) asks it for a piece a has in flight.
    for (let i = 0; i < 5 && !b.requested().some(p => fromA.has(p)); i++) {
      const p = b.requested()[i]
      b.deliver(p)
      await until(() => s.mine.has(p))
    }
    const dup = b.requested().find(p => fromA.has(p))
    expect(dup).toBeDefined()
    expect(s.mine.has(dup as number)).toBe(false)
    b.deliver(dup as number)
    await until(() => s.mine.has(dup as number))
    expect(a.sent).toContainEqual({ t: 'cancel', piece: dup })
    await s.close(true)
  })

  it('assembles, verifies and commits the whole file, and reports success', async () => {
    const s = session()
    await s.start()
    const seed = new FakePeer('seed', full())
    s.attach(seed, hello(s))
    await deliverRequested(s, seed)
    await until(() => reports.length === 1)
    expect(reports[0]).toMatchObject({ distributionId: 'd1', outcome: 'succeeded', sha256: MANIFEST.sha256 })
    expect((await plugin.stat(new URL('mem://dst/image'))).sha256).toBe(MANIFEST.sha256)
    await s.close(false)
  })

  it('on cancel closes its peers, removes the partial and forgets the distribution', async () => {
    const s = session()
    await s.start()
    const seed = new FakePeer('seed', full())
    s.attach(seed, hello(s))
    seed.deliver(seed.requested()[0])
    await until(() => s.mine.count() === 1)
    await s.close(true)
    expect(seed.isClosed).toBe(true)
    expect(await journal.getSwarm('d1')).toBeUndefined()
    expect(ticks).toHaveLength(0)
    // A new session finds nothing to resume.
    const again = session()
    await again.start()
    expect(again.mine.count()).toBe(0)
    await again.close(true)
  })

  it('resumes from its journal: pieces journaled at a tick are not fetched again', async () => {
    const s = session()
    await s.start()
    const seed = new FakePeer('seed', full())
    s.attach(seed, hello(s))
    const [p0, p1] = seed.requested()
    seed.deliver(p0)
    seed.deliver(p1)
    await until(() => s.mine.count() === 2)
    for (const tick of [...ticks]) tick()
    await vi.waitFor(async () => { expect(Bitfield.fromBase64(5, (await journal.getSwarm('d1'))?.have ?? '').count()).toBe(2) }, { timeout: 900, interval: 2 })
    await s.close(false, false)
    const again = session()
    await again.start()
    expect(again.mine.has(p0) && again.mine.has(p1)).toBe(true)
    const next = new FakePeer('seed', full())
    again.attach(next, hello(again))
    expect(next.requested()).not.toContain(p0)
    expect(next.requested()).not.toContain(p1)
    await again.close(true)
  })

  it('asks the seed again as sole source for a piece held out of its reach only once starved and a tick has passed', async () => {
    const s = session()
    await s.start()
    const seed = new FakePeer('seed', full())
    s.attach(seed, hello(s))
    const [away] = seed.requested()
    seed.reject(away, ['far'])
    // With a bounded peer set 'far' is usually a few hops away: the piece comes that way, the seed does not send it twice.
    expect(seed.soleRequests()).toEqual([])
    for (let i = 0; i < 8 && s.mine.count() < 4; i++) {
      const p = seed.requested().find(x => x !== away && !s.mine.has(x)) as number
      seed.deliver(p)
      await until(() => s.mine.has(p))
    }
    await until(() => s.mine.count() === 4)
    // Until a tick, the refused piece is not asked again at all.
    expect(seed.requested().filter(p => p === away)).toHaveLength(1)
    expect(seed.soleRequests()).toEqual([])
    for (let tick = 0; tick < 3 && seed.soleRequests().length === 0; tick++) {
      for (const t of [...ticks]) t()
      await until(() => seed.requested().filter(p => p === away).length >= tick + 2)
      if (seed.soleRequests().length === 0) seed.reject(away, ['far'])
    }
    expect(seed.soleRequests()).toEqual([away])
    await s.close(true)
  })

  /** The mem plug-in, its writer's reads counted and its stored bytes passed through `mangle`. */
  function watched (mangle: (offset: number, chunks: Uint8Array[]) => Uint8Array[] = (_o, c) => c): { reads: number[] } {
    const base = mem()
    const reads: number[] = []
    plugin = {
      ...base,
      openWriterAt: async (url, opts) => {
        const w = await (base.openWriterAt as NonNullable<ProtocolPlugin['openWriterAt']>)(url, opts)
        const writer: WriterAt = {
          ...w,
          resumed: w.resumed,
          writeAt: async (offset, chunks) => { await w.writeAt(offset, mangle(offset, chunks)) },
          readAt: async (offset, length) => { reads.push(length); return await w.readAt(offset, length) }
        }
        return writer
      }
    }
    return { reads }
  }

  it('reads each piece back and checks it while the rest arrives: after the last piece only that piece is read', async () => {
    const { reads } = watched()
    const s = session()
    await s.start()
    const seed = new FakePeer('seed', full())
    s.attach(seed, hello(s))
    const delivered = await deliverRequested(s, seed, 4)
    // The four stored pieces were read back before the last one came.
    await until(() => reads.reduce((n, r) => n + r, 0) === 4 * PIECE)
    const last = [0, 1, 2, 3, 4].find(p => !delivered.includes(p)) as number
    await until(() => seed.requested().includes(last))
    const before = reads.length
    seed.deliver(last)
    await until(() => reports.length === 1)
    expect(reports[0]).toMatchObject({ outcome: 'succeeded', sha256: MANIFEST.sha256 })
    // Not the whole file again: the one piece that came last.
    expect(reads.slice(before)).toEqual([PIECE])
    await s.close(false)
  })

  it('fails as soon as a stored piece does not read back intact, without fetching the rest', async () => {
    // A target that stores something else than it was given (a broken plug-in or volume), for the first piece only.
    let writes = 0
    watched((_offset, chunks) => writes++ === 0 ? chunks.map(c => Uint8Array.from(c).fill(0x78)) : chunks)
    const s = session()
    await s.start()
    const seed = new FakePeer('seed', full())
    s.attach(seed, hello(s))
    seed.deliver(seed.requested()[0])
    await until(() => reports.length === 1)
    expect(reports[0]).toMatchObject({ outcome: 'failed', error: { code: 'checksum_mismatch' } })
    expect(s.mine.count()).toBe(1)
    await s.close(true)
  })

  it('reads back the pieces a resumed partial holds too: one changed while the agent was down fails the check', async () => {
    const s = session()
    await s.start()
    const seed = new FakePeer('seed', full())
    s.attach(seed, hello(s))
    const [p0] = seed.requested()
    seed.deliver(p0)
    await until(() => s.mine.count() === 1)
    for (const tick of [...ticks]) tick()
    await vi.waitFor(async () => { expect(Bitfield.fromBase64(5, (await journal.getSwarm('d1'))?.have ?? '').count()).toBe(1) }, { timeout: 900, interval: 2 })
    await s.close(false, false)
    // The partial changes behind the journal's back before the agent comes back.
    const base = plugin
    plugin = {
      ...base,
      openWriterAt: async (url, opts) => {
        const w = await (base.openWriterAt as NonNullable<ProtocolPlugin['openWriterAt']>)(url, opts)
        await w.writeAt(p0 * PIECE, [new Uint8Array(PIECE).fill(0x78)])
        return w
      }
    }
    const again = session()
    await again.start()
    expect(again.mine.has(p0)).toBe(true)
    await until(() => reports.length === 1)
    expect(reports[0]).toMatchObject({ outcome: 'failed', error: { code: 'checksum_mismatch' } })
    await again.close(true)
  })

  it('gives its upload to the rarest piece and the emptiest asker first, and sends nothing to a peer that got the piece meanwhile', async () => {
    // The upload bucket's clock is the test's: a take waits until the test moves time on.
    let t = 0
    const sleepers: Array<{ at: number, go: () => void }> = []
    const clock: Clock = {
      now: () => t,
      every: () => () => {},
      sleep: async ms => { await new Promise<void>(resolve => { sleepers.push({ at: t + ms, go: resolve }) }) }
    }
    const advance = (ms: number): void => {
      t += ms
      for (const s of sleepers.splice(0)) if (s.at <= t) s.go(); else sleepers.push(s)
    }
    // 8 bytes (a piece) a second, no burst to speak of: each piece waits a second for its tokens.
    const s = session(MANIFEST, undefined, new TokenBucket(PIECE, 1, clock))
    await s.start()
    const seed = new FakePeer('seed', full())
    s.attach(seed, hello(s))
    await deliverRequested(s, seed)
    await until(() => reports.length === 1)
    // Done here, it serves on. Three peers: one whose request holds the upload, then two asking for the same piece.
    const first = new FakePeer('first', new Bitfield(5))
    const rich = new FakePeer('rich', Bitfield.fromBase64(5, Buffer.from([0b11000000]).toString('base64')))
    const empty = new FakePeer('empty', new Bitfield(5))
    for (const p of [first, rich, empty]) s.attach(p, hello(s))
    first.ask(0)
    await until(() => sleepers.length === 1)
    rich.ask(4)
    empty.ask(4)
    advance(1000)
    await until(() => first.piecesSent().length === 1 && sleepers.length === 1)
    advance(1000)
    // The same piece to both: the asker holding nothing goes first, though it asked second.
    await until(() => empty.piecesSent().length === 1 && sleepers.length === 1)
    expect(rich.piecesSent()).toEqual([])
    advance(1000)
    await until(() => rich.piecesSent().length === 1)
    // `rich` asks for piece 3 while the upload is busy, and gets it elsewhere meanwhile (its `have` comes):
    // its turn passes without a send, and its next request is served.
    first.ask(1)
    await until(() => sleepers.length === 1)
    rich.ask(3)
    rich.ask(2)
    rich.have.set(3)
    advance(1000)
    await until(() => first.piecesSent().length === 2 && sleepers.length === 1)
    advance(1000)
    await until(() => rich.piecesSent().length === 2)
    expect(rich.piecesSent()).toEqual([4, 2])
    expect(empty.piecesSent()).toEqual([4])
    expect(first.piecesSent()).toEqual([0, 1])
    await s.close(false)
  })

  it('serves a piece asked for while the object is being committed once the commit is done, instead of dropping the asker', async () => {
    // A writer that refuses reads while it commits (as the file plug-in does while it renames), the commit held by the test.
    const base = mem()
    let releaseCommit = (): void => {}
    let committing = false
    plugin = {
      ...base,
      openWriterAt: async (url, opts) => {
        const w = await (base.openWriterAt as NonNullable<ProtocolPlugin['openWriterAt']>)(url, opts)
        const writer: WriterAt = {
          ...w,
          resumed: w.resumed,
          readAt: async (offset, length) => {
            if (committing) throw new Error('writer is already failed')
            return await w.readAt(offset, length)
          },
          commit: async () => {
            committing = true
            await new Promise<void>(resolve => { releaseCommit = resolve })
            await w.commit()
            committing = false
          }
        }
        return writer
      }
    }
    // No piece cache: every serve reads through the writer.
    const s = session(MANIFEST, undefined, undefined, 0)
    await s.start()
    const seed = new FakePeer('seed', full())
    s.attach(seed, hello(s))
    await deliverRequested(s, seed)
    await until(() => committing)
    const asker = new FakePeer('asker', new Bitfield(5))
    s.attach(asker, hello(s))
    asker.ask(2)
    releaseCommit()
    await until(() => asker.piecesSent().length === 1)
    expect(asker.isClosed).toBe(false)
    await until(() => reports.length === 1)
    expect(reports[0]).toMatchObject({ outcome: 'succeeded' })
    await s.close(false)
  })
})
