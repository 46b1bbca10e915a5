import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import {
  CanceledError, DATA_PROTOCOL, DataResponse, DataTrailer, FrameReader, InvalidArgumentError, ProtocolError, SourceChangedError, TYPE_END,
  UnsupportedError, WIRE_VERSION, decode, ephemeral, fromErrorInfo, sendFrame, toStaccatoError
} from '../mesh/index.ts'
import type { DataRequest, Ephemeral, MeshNode } from '../mesh/index.ts'
import type { ProtocolPlugin, ReadOptions, StatResult, Writer } from './contract.ts'
import { connectOffered } from './agent-direct.ts'

export interface AgentPeer {
  peerId: string
  addrs: string[]
}

export interface AgentPluginOptions {
  node: MeshNode
  /** The agent that holds the source. */
  peer: AgentPeer
  /** The coordinator's ticket for reading this source. */
  ticket: string
  /** Ask the source agent for a whole-object sha256 in the trailer (costs it one pass over the bytes). */
  digest?: boolean
  /** The algorithm of that digest (sha256 when absent); onDigest gets it in this algorithm. */
  algorithm?: 'sha256' | 'blake3'
  /** Offer to take the bytes on the source agent's direct data socket (true when absent); false keeps them on the stream. */
  direct?: boolean
}

type Header = Extract<DataResponse, { ok: true }>

/**
 * `agent://name/volume/path` on another agent, read over /staccato/data/1
 * with a ticket. The bytes travel directly between the two agents.
 */
export function agent (init: AgentPluginOptions): ProtocolPlugin {
  const digest = init.digest ?? true

  async function open (url: URL, req: Omit<DataRequest, 'v' | 'ticket' | 'source'>, signal?: AbortSignal): Promise<{ stream: Stream, reader: FrameReader, header: Header }> {
    const addrs = init.peer.addrs.map(a => multiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${init.peer.peerId}`))
    let stream: Stream
    try {
      stream = await init.node.dialProtocol(addrs, DATA_PROTOCOL, { signal })
    } catch (err) {
      throw toStaccatoError(err)
    }
    const reader = new FrameReader(stream)
    try {
      await sendFrame(stream, { v: WIRE_VERSION, ticket: init.ticket, source: url.href, ...req }, signal)
      const header = decode(DataResponse, await reader.readFrame(), 'data response')
      if (!header.ok) throw fromErrorInfo(header.error)
      return { stream, reader, header }
    } catch (err) {
      stream.abort(toStaccatoError(err))
      throw toStaccatoError(err)
    }
  }

  async function * readStream (reader: FrameReader, header: Header): AsyncGenerator<Uint8Array, DataTrailer> {
    yield * reader.readBytes(header.length)
    return decode(DataTrailer, await reader.readFrame(), 'data trailer')
  }

  /**
   * The bytes on the source's data port (docs/security.md, "Mesh: the direct
   * data socket"); when it cannot be reached, the reader says so on the stream
   * and takes them there instead: a transfer never fails for want of the port.
   */
  async function * readDirect (stream: Stream, reader: FrameReader, header: Header, own: Ephemeral, signal?: AbortSignal): AsyncGenerator<Uint8Array, DataTrailer> {
    const direct = header.direct
    if (direct === undefined) throw new ProtocolError('no direct socket offered')
    const connected = await connectOffered(init.node, init.peer.peerId, stream, own, direct, signal)
    if (connected === undefined) return yield * readStream(reader, header)
    const { records, socket } = connected
    let bytes = 0
    try {
      for await (const record of records.records()) {
        if (record.type === TYPE_END) {
          const trailer = decode(DataTrailer, parseTrailer(record.body), 'data trailer')
          if (trailer.ok && bytes !== header.length) throw new ProtocolError(`direct data: ended after ${bytes} of ${header.length} bytes`)
          return trailer
        }
        bytes += record.body.byteLength
        if (bytes > header.length) throw new ProtocolError(`direct data: more than the ${header.length} bytes announced`)
        yield record.body
      }
      throw new ProtocolError('direct data: no end record')
    } finally {
      socket.destroy()
    }
  }

  return {
    scheme: 'agent',
    capabilities: { read: true, write: false, resume: true, list: false, checksum: false },

    async stat (url, opts): Promise<StatResult> {
      const { stream, header } = await open(url, { offset: 0, length: 0, digest: false }, opts?.signal)
      // The header is all a stat needs; a close that fails (the peer reset first) changes nothing in it.
      await stream.close().catch(() => {})
      return { size: header.size, mtime: header.mtime, etag: header.etag }
    },

    async * read (url: URL, opts: ReadOptions): AsyncGenerator<Uint8Array> {
      const wantDigest = digest && opts.length === undefined
      const algorithm = init.algorithm ?? 'sha256'
      // Only a non-default algorithm is named, so that a request stays what an agent without checksum modes reads.
      const req = { offset: opts.offset, length: opts.length, expect: opts.expect, digest: wantDigest, ...(algorithm === 'sha256' ? {} : { algorithm }) }
      const own = init.direct === false ? undefined : ephemeral()
      let opened
      try {
        opened = await open(url, own === undefined ? req : { ...req, direct: { pub: own.pub } }, opts.signal)
      } catch (err) {
        // An agent from before the data port refuses the offer as an unknown field: ask again without it.
        if (own === undefined || !(err instanceof InvalidArgumentError)) throw err
        opened = await open(url, req, opts.signal)
      }
      const { stream, reader, header } = opened
      let ended = false
      try {
        if (opts.expect !== undefined && (header.size !== opts.expect.size || header.mtime !== opts.expect.mtime)) {
          throw new SourceChangedError(`${url.href} changed: size ${opts.expect.size} → ${header.size}, mtime ${opts.expect.mtime} → ${header.mtime}`)
        }
        const trailer = own !== undefined && header.direct !== undefined
          ? yield * readDirect(stream, reader, header, own, opts.signal)
          : yield * readStream(reader, header)
        if (!trailer.ok) throw fromErrorInfo(trailer.error)
        const sent = algorithm === 'blake3' ? trailer.blake3 : trailer.sha256
        if (sent !== undefined) opts.onDigest?.(sent)
        ended = true
        // Every byte and the trailer are in: a close that fails (the peer reset first) changes nothing read.
        await stream.close().catch(() => {})
      } catch (err) {
        ended = true
        stream.abort(toStaccatoError(err))
        throw toStaccatoError(err)
      } finally {
        // A consumer that stops early (a break, an error of its own, a range it has enough of) ends this generator
        // by return(): no catch runs, and the holder's serve loop would wait on a full window, holding one of its
        // data streams, for as long as the connection lives.
        if (!ended) stream.abort(new CanceledError(`${url.href}: the reader stopped before the end`))
      }
    },

    async write (url): Promise<Writer> {
      throw new UnsupportedError(`cannot write to ${url.href} from here: the destination agent pulls, so run the transfer on it`)
    }
  }
}

function parseTrailer (body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw new ProtocolError('direct data: the end record holds no JSON trailer', { cause: err })
  }
}
