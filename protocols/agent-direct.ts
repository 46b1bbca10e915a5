import type { Socket } from 'node:net'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { RecordReader, UnsupportedError, WIRE_VERSION, connectDirect, deriveKeys, sendFrame, toStaccatoError } from '../mesh/index.ts'
import type { Ephemeral, MeshNode } from '../mesh/index.ts'

/** Where a source agent's direct socket is, as it announced it on the stream. */
export interface DirectAnswer { port: number, host?: string, pub: string, session: string }

/**
 * Connects to the direct data socket a source agent offered on `stream`
 * (docs/security.md, "Mesh: the direct data socket"). When it cannot be
 * reached, says so on the stream and returns undefined: the source then sends
 * on the stream instead, and a transfer never fails for want of the port.
 */
export async function connectOffered (node: MeshNode, peerId: string, stream: Stream, own: Ephemeral, direct: DirectAnswer, signal?: AbortSignal): Promise<{ records: RecordReader, socket: Socket } | undefined> {
  const keys = deriveKeys(own.privateKey, direct.pub, {
    serverPeer: peerId, readerPeer: node.peerId.toString(), serverPub: direct.pub, readerPub: own.pub, session: Buffer.from(direct.session, 'base64url')
  })
  // Only ever the host this reader already reaches the source agent at: a host named in the answer is used
  // when it is that one, never another, so that no peer can point this agent's connections somewhere else.
  const reached = remoteHost(node, peerId)
  const host = direct.host === undefined || direct.host === reached ? reached : undefined
  const records = new RecordReader(keys.toReader)
  try {
    if (host === undefined) throw new UnsupportedError(direct.host !== undefined && reached !== undefined ? `the source named ${direct.host} for its data port, not the host it is reached at (${reached})` : 'no address of the source agent to reach its data port at')
    return { records, socket: await connectDirect(host, direct.port, keys, records, { signal }) }
  } catch (err) {
    if (signal?.aborted === true) throw err
    await sendFrame(stream, { v: WIRE_VERSION, direct: false, reason: toStaccatoError(err).message.slice(0, 1024) }, signal)
    return undefined
  }
}

/** The host this reader reached the source agent's libp2p listener at: its data port is on the same host. */
function remoteHost (node: MeshNode, peerId: string): string | undefined {
  for (const conn of node.getConnections(peerIdFromString(peerId))) {
    const host = hostOfMultiaddr(conn.remoteAddr)
    if (host !== undefined) return host
  }
  return undefined
}

function hostOfMultiaddr (addr: Multiaddr): string | undefined {
  return addr.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6' || c.name === 'dns4' || c.name === 'dns6' || c.name === 'dns')?.value
}
