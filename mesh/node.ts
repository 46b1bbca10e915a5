import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import type { ConnectionGater, Libp2p, PrivateKey } from '@libp2p/interface'

export interface MeshNodeOptions {
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. /ip4/0.0.0.0/tcp/7001. Empty for a dial-only node. */
  listen: string[]
  connectionGater?: ConnectionGater
  /** Cap on inbound connections, so one noisy peer cannot exhaust the agent. */
  maxConnections?: number
}

export type MeshNode = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>>, ping: ReturnType<ReturnType<typeof ping>> }>

// Yamux starts a stream at a 256 KiB window and doubles it while data flows;
// starting at 4 MiB fills a LAN pipe from the first round trip.
const YAMUX_INITIAL_WINDOW = 4 * 1024 * 1024
const YAMUX_MAX_WINDOW = 16 * 1024 * 1024
// A slow disk can leave a full window unread; the default 4 MiB read buffer
// would then reset the stream, so allow a few windows' worth.
const MAX_READ_BUFFER = 4 * YAMUX_MAX_WINDOW

export async function createMeshNode (opts: MeshNodeOptions): Promise<MeshNode> {
  return await createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({
      streamOptions: { initialStreamWindowSize: YAMUX_INITIAL_WINDOW, maxStreamWindowSize: YAMUX_MAX_WINDOW, maxReadBufferLength: MAX_READ_BUFFER }
    })],
    connectionGater: {
      // Agents and coordinators live on private networks and on loopback in tests.
      denyDialMultiaddr: () => false,
      ...opts.connectionGater
    },
    connectionManager: { maxConnections: opts.maxConnections ?? 300 },
    services: { identify: identify(), ping: ping() }
  })
}
