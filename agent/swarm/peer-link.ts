import type { SwarmMessage } from '../../mesh/index.ts'
import type { Bitfield } from './bitfield.ts'

type WithoutVersion<T> = T extends unknown ? Omit<T, 'v'> : never
/** A swarm message a session sends once the hello exchange is over. */
export type Outgoing = WithoutVersion<Exclude<SwarmMessage, { t: 'hello' }>>

export interface PeerEvents {
  have(peer: PeerLink, piece: number): void
  request(peer: PeerLink, piece: number, sole: boolean): void
  /** `parts`: the piece's bytes in the chunks they arrived in, not copied into one buffer. */
  piece(peer: PeerLink, piece: number, parts: Uint8Array[]): void
  reject(peer: PeerLink, piece: number, reason: string, holders: string[]): void
  cancel(peer: PeerLink, piece: number): void
  closed(peer: PeerLink, err?: Error): void
}

/**
 * What a session needs of one other participant: SwarmPeer over a libp2p
 * stream in the agent, a fake in the session's unit tests.
 */
export interface PeerLink {
  readonly peerId: string
  readonly name: string
  readonly have: Bitfield
  /** Pieces we asked this peer for and wait for. */
  readonly inflight: Set<number>
  /** Pieces this peer declined to send us; asked elsewhere. */
  readonly refused: Set<number>
  /** Pieces only this peer (the seed) can send us: the holders it named are out of our reach. */
  readonly soleFor: Set<number>
  readonly isClosed: boolean
  /** Queues a message (and the bytes of a piece) behind everything sent before it. */
  send(msg: Outgoing, parts?: Uint8Array[]): Promise<void>
  /** Reads the peer's messages into `events` until the link closes, then calls `events.closed`. */
  run(events: PeerEvents): Promise<void>
  close(err?: Error): void
}
