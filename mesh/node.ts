import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import type { ConnectionGater, Libp2p, PrivateKey } from '@libp2p/interface'
import { nodeNoiseCrypto } from './noise-crypto.ts'
import { HandshakeGate, hostKey } from './handshake-gate.ts'
import { secureChannel } from './secure-channel.ts'
import type { SecureChannelInit } from './secure-channel.ts'
import { meshListenError } from './listen-errors.ts'

export interface MeshNodeOptions {
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. /ip4/0.0.0.0/tcp/7001. Empty for a dial-only node. */
  listen: string[]
  connectionGater?: ConnectionGater
  /** Cap on inbound connections, so one noisy peer cannot exhaust the agent. */
  maxConnections?: number
  /** Options of the AES-GCM record layer (tests watch its errors and shorten its rekey interval). */
  secureChannel?: SecureChannelInit
}

export type MeshNode = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>, ping: ReturnType<ReturnType<typeof ping>> }>

// Yamux starts a stream at a 256 KiB window and doubles it while data flows;
// starting at 4 MiB fills a LAN pipe from the first round trip.
const YAMUX_INITIAL_WINDOW = 4 * 1024 * 1024
const YAMUX_MAX_WINDOW = 16 * 1024 * 1024
// A slow disk can leave a full window unread; the default 4 MiB read buffer
// would then reset the stream, so allow a few windows' worth.
const MAX_READ_BUFFER = 4 * YAMUX_MAX_WINDOW
// Limits against a peer that opens connections or streams without end: the
// data and control handlers cap their own streams lower; these bound the rest.
const MAX_CONNECTIONS_PER_PEER = 8
const MAX_INBOUND_STREAMS_PER_CONNECTION = 256
// A connection is pending from TCP accept until Noise and the muxer are
// negotiated: multistream-select, the Noise XX handshake (1.5 round trips) and
// the muxer's selection, about four round trips in all. 3 s covers that at a
// 300 ms intercontinental RTT with room for a busy host, and is what a
// stranger with no key can hold a slot for (libp2p's default is 10 s).
const INBOUND_UPGRADE_TIMEOUT_MS = 3_000
// One source host (an IPv4 address, an IPv6 /64) may have this many handshakes
// in progress at once: enough for a few agents behind one NAT starting together.
const MAX_PENDING_INBOUND_PER_HOST = 4
// The global cap then takes 64 distinct hosts to fill, not one; a pending
// handshake costs a socket and a few KiB, so this many is cheap.
const MAX_PENDING_INBOUND_CONNECTIONS = 256
// Any key passes Noise, so a host could hold every connection slot with a
// fresh key per connection: one host gets a quarter of them. Agents behind
// one NAT use one connection each to the coordinator and one per peer agent.
const HOST_SHARE_OF_CONNECTIONS = 4
const DEFAULT_MAX_CONNECTIONS = 300

/** The mesh's yamux settings, shared with bench:stream's unencrypted baseline. */
export function meshMuxer (): ReturnType<typeof yamux> {
  return yamux({
    maxInboundStreams: MAX_INBOUND_STREAMS_PER_CONNECTION,
    streamOptions: { initialStreamWindowSize: YAMUX_INITIAL_WINDOW, maxStreamWindowSize: YAMUX_MAX_WINDOW, maxReadBufferLength: MAX_READ_BUFFER }
  })
}

export async function createMeshNode (opts: MeshNodeOptions): Promise<MeshNode> {
  // The gater runs only once the node exists; it needs the node to count a peer's connections.
  const self: { node?: MeshNode } = {}
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS
  const handshakes = new HandshakeGate({
    pendingPerHost: MAX_PENDING_INBOUND_PER_HOST,
    connectionsPerHost: Math.max(MAX_PENDING_INBOUND_PER_HOST, Math.floor(maxConnections / HOST_SHARE_OF_CONNECTIONS)),
    connectionsFrom: host => self.node?.getConnections().filter(c => c.direction === 'inbound' && hostKey(c.remoteAddr) === host).length ?? 0
  })
  try {
    self.node = await createLibp2p({
      privateKey: opts.privateKey,
      addresses: { listen: opts.listen },
      transports: [tcp()],
      // Our own channel first: between agents and coordinators it is chosen, and
      // costs a fraction of noise's per byte; stock noise serves any other peer.
      connectionEncrypters: [secureChannel(opts.secureChannel), noise({ crypto: nodeNoiseCrypto })],
      streamMuxers: [meshMuxer()],
      connectionGater: {
        // Agents and coordinators live on private networks and on loopback in tests.
        denyDialMultiaddr: () => false,
        denyInboundConnection: maConn => !handshakes.admit(maConn),
        denyInboundEncryptedConnection: (peerId, maConn) => {
          handshakes.release(maConn)
          return (self.node?.getConnections(peerId).length ?? 0) >= MAX_CONNECTIONS_PER_PEER
        },
        ...opts.connectionGater
      },
      connectionManager: {
        maxConnections,
        maxIncomingPendingConnections: MAX_PENDING_INBOUND_CONNECTIONS,
        inboundUpgradeTimeout: INBOUND_UPGRADE_TIMEOUT_MS
      },
      services: { identify: identify(), ping: ping() }
    })
  } catch (err) {
    // libp2p stopped what it had started; the operator gets the address and the option, not its stack.
    throw meshListenError(err, '--listen')
  }

  return self.node
}
