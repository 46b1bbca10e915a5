import type { Socket } from 'node:net'
import type { Connection, Stream } from '@libp2p/interface'
import {
  DATA_PROTOCOL, DataRequest, FrameReader, InvalidArgumentError, PermissionDeniedError, RecordWriter,
  SourceChangedError, WIRE_VERSION, decode, send, sendFrame, toStaccatoError, verifyTicket
} from '../mesh/index.ts'
import type { DataTrailer, MeshNode, TicketIssuer } from '../mesh/index.ts'
import { offerDirect } from './direct-offer.ts'
import type { DirectDataOptions } from './direct-offer.ts'
import { resolveLocal } from './resolve.ts'
import type { PluginSet } from './resolve.ts'
import type { AgentCounters } from './counters.ts'
import type { TokenBucket } from './rate-limit.ts'
import { newHasher } from './copy/checksum.ts'

export interface DataServerOptions {
  node: MeshNode
  self: string
  issuer: TicketIssuer
  plugins: PluginSet
  counters: AgentCounters
  upload?: TokenBucket
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** The data port: bulk bytes go there to readers that offer it; off when absent. */
  direct?: DirectDataOptions
}

// A peer that opens a stream and never sends its header must not hold it forever.
const HEADER_TIMEOUT_MS = 10_000

/**
 * The source side of /staccato/data/1: checks the ticket against the peer that
 * presents it, then streams the asked range, and a whole-object digest in the
 * trailer when asked, in the asked algorithm (computed from this agent's own reads: end-to-end).
 */
export async function startDataServer (opts: DataServerOptions): Promise<void> {
  await opts.node.handle(DATA_PROTOCOL, async (stream: Stream, connection: Connection) => {
    opts.counters.dataRequests++
    await serve(stream, connection, opts).catch(err => {
      const e = toStaccatoError(err)
      opts.log('data stream failed', { peer: connection.remotePeer.toString(), code: e.code, error: e.message }, 'warn')
      stream.abort(e)
    })
  }, { maxInboundStreams: 64 })
}

async function serve (stream: Stream, connection: Connection, opts: DataServerOptions): Promise<void> {
  const reader = new FrameReader(stream)
  let req: DataRequest
  let source
  try {
    const raw = await Promise.race([
      reader.readFrame(),
      new Promise((_resolve, reject) => setTimeout(() => reject(new InvalidArgumentError('no request header within 10 s')), HEADER_TIMEOUT_MS).unref())
    ])
    req = decode(DataRequest, raw, 'data request')
    await verifyTicket(req.ticket, opts.issuer, { reader: connection.remotePeer.toString(), source: req.source, offset: req.offset, length: req.length })
    source = resolveLocal(req.source, opts.self, opts.plugins, 'source')
    // A plug-in source is served only by the agent it names: the ticket says where it is read.
    if (source.location.kind === 'plugin' && source.location.via !== opts.self) {
      throw new PermissionDeniedError(`${req.source} is to be read via ${source.location.via ?? 'the executing agent'}, not '${opts.self}'`)
    }
  } catch (err) {
    opts.counters.dataRefused++
    await refuse(stream, err)
    return
  }
  const { plugin, url } = source
  let st
  try {
    st = await plugin.stat(url)
    if (req.expect !== undefined && (req.expect.size !== st.size || req.expect.mtime !== st.mtime || (req.expect.etag !== undefined && req.expect.etag !== st.etag))) {
      throw new SourceChangedError(`${req.source} changed since the transfer started (size ${req.expect.size} → ${st.size})`)
    }
    if (req.offset > st.size) throw new InvalidArgumentError(`offset ${req.offset} is past the end of ${req.source} (${st.size} bytes)`)
  } catch (err) {
    // A path the volume refuses (a symlink out of it …) is refused before a byte is read, like a bad ticket.
    opts.counters.dataRefused++
    await refuse(stream, err)
    return
  }
  const length = Math.min(req.length ?? st.size - req.offset, st.size - req.offset)
  const version = { size: st.size, mtime: st.mtime, etag: st.etag }
  const header = { v: WIRE_VERSION, ok: true, size: st.size, mtime: st.mtime, etag: st.etag, length } as const
  let sink: Sink | undefined
  // Either call sends the response header; the direct one says in it where the bytes will come from.
  if (length > 0 && req.direct !== undefined && opts.direct !== undefined) {
    const offered = await offerDirect(stream, reader, connection, req.direct.pub, opts.node, opts.direct, async direct => { await sendFrame(stream, { ...header, direct }) }, opts.log)
    if (offered !== undefined) sink = socketSink(stream, offered.socket, offered.key)
  } else {
    await sendFrame(stream, header)
  }
  const out = sink ?? streamSink(stream)

  try {
    const hash = req.digest && req.offset + length === st.size ? newHasher(req.algorithm ?? 'sha256') : undefined
    if (hash !== undefined && req.offset > 0) {
      for await (const chunk of plugin.read(url, { offset: 0, length: req.offset, expect: version, reuseBuffers: true })) hash.update(chunk)
    }
    if (length > 0) {
      // Each chunk is hashed and sealed (or queued whole on the stream, below) before the next is read.
      for await (const chunk of plugin.read(url, { offset: req.offset, length, expect: version, reuseBuffers: sink !== undefined })) {
        hash?.update(chunk)
        if (opts.upload !== undefined) await opts.upload.take(chunk.byteLength)
        await out.data(chunk)
        opts.counters.bytesServed += chunk.byteLength
      }
    }
    await out.end({ v: WIRE_VERSION, ok: true, ...(hash === undefined ? {} : { [hash.algorithm]: hash.digest() }) })
  } catch (err) {
    await out.fail(err)
    throw err
  }
}

/** Where the bytes and the trailer of one request go: the libp2p stream, or a direct socket. */
interface Sink {
  data: (chunk: Uint8Array) => Promise<void>
  end: (trailer: DataTrailer) => Promise<void>
  /** After an error: tell the reader if the way is still open (the caller aborts the stream). */
  fail: (err: unknown) => Promise<void>
}

function streamSink (stream: Stream): Sink {
  return {
    data: async chunk => { await send(stream, chunk) },
    end: async trailer => {
      await sendFrame(stream, trailer)
      await stream.close()
    },
    fail: async () => {}
  }
}

function socketSink (stream: Stream, socket: Socket, key: Uint8Array): Sink {
  const writer = new RecordWriter(socket, key)
  const trailerBytes = (trailer: DataTrailer): Uint8Array => new TextEncoder().encode(JSON.stringify(trailer))
  return {
    data: async chunk => { await writer.data(chunk) },
    end: async trailer => {
      await writer.end(trailerBytes(trailer))
      // The stream only carried the request: its close tells the reader nothing it needs, so a reset is no failure.
      await stream.close().catch(() => {})
    },
    fail: async err => {
      // An error trailer, sealed like the data, so that the reader sees why rather than a cut.
      if (!socket.destroyed) await writer.end(trailerBytes({ v: WIRE_VERSION, ok: false, error: toStaccatoError(err).toJSON() })).catch(() => {})
      socket.destroy()
    }
  }
}

async function refuse (stream: Stream, err: unknown): Promise<void> {
  const error = toStaccatoError(err).toJSON()
  // The refusal is a courtesy: a peer that already went away needs no answer, and the stream is ended below either way.
  await sendFrame(stream, { v: WIRE_VERSION, ok: false, error }).catch(() => {})
  await stream.close().catch(() => stream.abort(toStaccatoError(err)))
}
