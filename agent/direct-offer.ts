import type { Socket } from 'node:net'
import type { Connection, Stream } from '@libp2p/interface'
import { DirectFallback, HELLO_TIMEOUT_MS, TimeoutError, decode, deriveKeys, ephemeral, newSession } from '../mesh/index.ts'
import type { DirectListener, FrameReader, MeshNode } from '../mesh/index.ts'

export interface DirectDataOptions {
  listener: DirectListener
  /** The host readers connect to; when absent, the address they reached this agent's libp2p listener at. */
  host?: string
  /** The port readers connect to, when a forward maps it to another; the listener's own when absent. */
  port?: number
}

/** Where the reader is to connect, as announced on the stream (the `direct` of a data response or tree message). */
export interface DirectAnswer { port: number, host?: string, pub: string, session: string }

/**
 * Offers the reader a direct socket for what follows on this (authenticated)
 * stream: keys from an X25519 exchange with the reader's share, a fresh
 * session announced by `announce`. The socket and the key to seal with, or
 * undefined when the reader answers that it cannot connect, or never comes:
 * the bytes then go on the stream, as to a reader that offered nothing.
 */
export async function offerDirect (
  stream: Stream, reader: FrameReader, connection: Connection, readerPub: string, node: MeshNode, direct: DirectDataOptions,
  announce: (answer: DirectAnswer) => Promise<void>,
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
): Promise<{ socket: Socket, key: Uint8Array } | undefined> {
  const own = ephemeral()
  const session = newSession()
  const keys = deriveKeys(own.privateKey, readerPub, {
    serverPeer: node.peerId.toString(), readerPeer: connection.remotePeer.toString(), serverPub: own.pub, readerPub, session
  })
  const giveUp = new AbortController()
  const claimed = direct.listener.expect(keys, giveUp.signal)
  // The losers of the race below settle later, with nobody listening: they must not become unhandled rejections.
  claimed.catch(() => {})
  const answer = reader.readFrame().then(raw => decode(DirectFallback, raw, 'direct fallback'))
  answer.catch(() => {})
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new TimeoutError(`the reader neither connected to the data port nor fell back within ${HELLO_TIMEOUT_MS} ms`)) }, HELLO_TIMEOUT_MS)
  })
  try {
    await announce({ port: direct.port ?? direct.listener.port, ...(direct.host === undefined ? {} : { host: direct.host }), pub: own.pub, session: session.toString('base64url') })
    const won = await Promise.race([claimed, answer, timeout])
    if (!('v' in won)) return { socket: won, key: keys.toReader }
    log('direct data socket not used; serving over the libp2p stream', { peer: connection.remotePeer.toString(), reason: won.reason })
    return undefined
  } finally {
    clearTimeout(timer)
    giveUp.abort(new TimeoutError('direct session no longer expected'))
  }
}
