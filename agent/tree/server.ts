import type { Connection, Stream } from '@libp2p/interface'
import type { Socket } from 'node:net'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  FrameReader, InvalidArgumentError, PermissionDeniedError, RecordWriter, TREE_PROTOCOL, TreeRequest, WIRE_VERSION,
  decode, encodeFrame, namesDirectory, parseLocation, send, sendFrame, toStaccatoError, verifyTicket
} from '../../mesh/index.ts'
import type { MeshNode, TicketIssuer, TreeMessage } from '../../mesh/index.ts'
import { offerDirect } from '../direct-offer.ts'
import type { DirectDataOptions } from '../direct-offer.ts'
import { listMessages, readMessages } from './holder.ts'
import type { TreeHolder } from './holder.ts'

export interface TreeServerOptions extends TreeHolder {
  node: MeshNode
  self: string
  issuer: TicketIssuer
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** The data port: a read batch whose reader offers it goes there (agent/direct-offer.ts); on the stream when absent. */
  direct?: DirectDataOptions
}

const HEADER_TIMEOUT_MS = 10_000

/** Bytes of messages gathered before a send: 16 files of 4 KiB; a 1 MiB chunk of a large file goes alone. */
const COALESCE_BYTES = 64 * 1024

/**
 * The holder's side of /staccato/tree/1: lists a directory tree, and streams
 * batches of its files back to back, against a ticket for the tree.
 */
export async function startTreeServer (opts: TreeServerOptions): Promise<void> {
  await opts.node.handle(TREE_PROTOCOL, async (stream: Stream, connection: Connection) => {
    opts.counters.dataRequests++
    await serve(stream, connection, opts).catch(err => {
      const e = toStaccatoError(err)
      opts.log('tree stream failed', { peer: connection.remotePeer.toString(), code: e.code, error: e.message }, 'warn')
      stream.abort(e)
    })
  }, { maxInboundStreams: 16 })
}

async function serve (stream: Stream, connection: Connection, opts: TreeServerOptions): Promise<void> {
  const reader = new FrameReader(stream)
  let req: TreeRequest
  let dir: URL
  try {
    const raw = await Promise.race([
      reader.readFrame(),
      new Promise((_resolve, reject) => setTimeout(() => reject(new InvalidArgumentError(`no request header within ${HEADER_TIMEOUT_MS / 1000} s`)), HEADER_TIMEOUT_MS).unref())
    ])
    req = decode(TreeRequest, raw, 'tree request')
    await verifyTicket(req.ticket, opts.issuer, { reader: connection.remotePeer.toString(), source: req.source, offset: 0 })
    const loc = parseLocation(req.source, 'source')
    if (loc.kind !== 'agent' || loc.agent !== opts.self || !namesDirectory(loc)) throw new PermissionDeniedError(`${req.source} is not a directory of agent '${opts.self}'`)
    dir = new URL(`file://${loc.url.pathname}`)
  } catch (err) {
    opts.counters.dataRefused++
    await sendFrame(stream, { v: WIRE_VERSION, t: 'error', error: toStaccatoError(err).toJSON() }).catch(() => {})
    await stream.close().catch(() => {})
    return
  }
  // A small file is three messages (header, bytes, end): sent one by one, each is a muxer frame and an encryption of its
  // own, which cost more than the file. Gathered up to COALESCE_BYTES, many files go in one.
  const pending = new Uint8ArrayList()
  const flush = async (): Promise<void> => {
    if (pending.byteLength === 0) return
    const all = pending.subarray()
    pending.consume(pending.byteLength)
    await send(stream, all)
  }
  try {
    if (req.op === 'read' && req.direct !== undefined && opts.direct !== undefined) {
      const offered = await offerDirect(stream, reader, connection, req.direct.pub, opts.node, opts.direct, async direct => { await sendFrame(stream, { v: WIRE_VERSION, t: 'direct', direct }) }, opts.log)
      if (offered !== undefined) {
        // Each message is sealed before the next is asked for: the holder's read buffers can take turns.
        await serveDirect(readMessages(opts, dir, req, { reuseBuffers: true }), offered.socket, offered.key)
        // The stream only carried the request: its close tells the reader nothing it needs.
        await stream.close().catch(() => {})
        return
      }
    }
    const messages = req.op === 'list' ? listMessages(opts, dir, req) : readMessages(opts, dir, req)
    for await (const m of messages) {
      const bytes = m instanceof Uint8Array ? m : encodeFrame(m)
      if (pending.byteLength + bytes.byteLength < COALESCE_BYTES) {
        pending.append(bytes)
        continue
      }
      await flush()
      await send(stream, bytes)
    }
    await flush()
  } catch (err) {
    await flush().catch(() => {})
    await sendFrame(stream, { v: WIRE_VERSION, t: 'error', error: toStaccatoError(err).toJSON() }).catch(() => {})
    await stream.close().catch(() => {})
    return
  }
  await sendFrame(stream, { v: WIRE_VERSION, t: 'end' })
  await stream.close()
}

/**
 * A read batch on the direct data socket: the same messages and raw bytes as
 * on the stream, sealed as records, then the end record. An error goes as an
 * `error` message, sealed like the rest, so that the reader sees why.
 */
async function serveDirect (messages: AsyncIterable<TreeMessage | Uint8Array>, socket: Socket, key: Uint8Array): Promise<void> {
  const writer = new RecordWriter(socket, key)
  const none = new Uint8Array(0)
  try {
    for await (const m of messages) await writer.data(m instanceof Uint8Array ? m : encodeFrame(m))
    await writer.data(encodeFrame({ v: WIRE_VERSION, t: 'end' }))
    await writer.end(none)
  } catch (err) {
    if (!socket.destroyed) {
      await writer.data(encodeFrame({ v: WIRE_VERSION, t: 'error', error: toStaccatoError(err).toJSON() })).catch(() => {})
      await writer.end(none).catch(() => {})
    }
    socket.destroy()
  }
}
