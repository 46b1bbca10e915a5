import { describe, it, expect } from 'vitest'
import { SwarmSession } from '../../agent/swarm/session.ts'
import type { SessionOptions } from '../../agent/swarm/session.ts'
import { Bitfield } from '../../agent/swarm/bitfield.ts'
import type { SwarmPeer } from '../../agent/swarm/peer.ts'

const PIECES = 8

/** A peer that records what the session sends it; it has no pieces, so the session asks it for none. */
function fakePeer (): { peer: SwarmPeer, sent: unknown[] } {
  const sent: unknown[] = []
  const peer = {
    peerId: 'peer-b',
    name: 'b',
    have: new Bitfield(PIECES),
    inflight: new Set<number>(),
    refused: new Set<number>(),
    soleFor: new Set<number>(),
    isClosed: false,
    send: async (msg: unknown) => { sent.push(msg) },
    run: async () => await new Promise<void>(() => {}),
    close: () => {}
  }
  return { peer: peer as unknown as SwarmPeer, sent }
}

function destination (): SwarmSession {
  const manifest = { size: PIECES * 65536, mtime: 0, pieceSize: 65536, sha256: '0'.repeat(64), pieces: Array.from({ length: PIECES }, () => '0'.repeat(64)) }
  const opts = {
    join: { distributionId: 'tr_x', role: 'destination', source: 'agent://seed/v/f', destination: 'agent://a/v/f', manifest, peers: [], ticket: 't' },
    self: 'a',
    log: () => {}
  } as unknown as SessionOptions
  return new SwarmSession(opts)
}

describe('a swarm peer attached after the hello exchange', () => {
  it('is told of the pieces that landed while our hello was on the wire, and only those', () => {
    const session = destination()
    session.mine.set(1)
    const advertised = Bitfield.fromBase64(PIECES, session.mine.toBase64())
    // Pieces verified between the hello's snapshot and the attach: announced then only to peers attached at the time.
    session.mine.set(4)
    session.mine.set(6)
    const { peer, sent } = fakePeer()
    session.attach(peer, advertised)
    expect(sent).toEqual([{ t: 'have', piece: 4 }, { t: 'have', piece: 6 }])
  })
})
