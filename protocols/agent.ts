import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import {
  DATA_PROTOCOL, DataResponse, DataTrailer, FrameReader, SourceChangedError, UnsupportedError, WIRE_VERSION,
  decode, fromErrorInfo, sendFrame, toStaccatoError
} from '../mesh/index.ts'
import type { DataRequest, MeshNode } from '../mesh/index.ts'
import type { ProtocolPlugin, ReadOptions, StatResult, Writer } from './contract.ts'

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
}

/**
 * `agent://name/volume/path` on another agent, read over /staccato/data/1
 * with a ticket. The bytes travel directly between the two agents.
 */
export function agent (init: AgentPluginOptions): ProtocolPlugin {
  const digest = init.digest ?? true

  async function open (url: URL, req: Omit<DataRequest, 'v' | 'ticket' | 'source'>, signal?: AbortSignal): Promise<{ stream: Stream, reader: FrameReader, header: Extract<DataResponse, { ok: true }> }> {
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
      const { stream, reader, header } = await open(url, { offset: opts.offset, length: opts.length, expect: opts.expect, digest: wantDigest, ...(algorithm === 'sha256' ? {} : { algorithm }) }, opts.signal)
      try {
        if (opts.expect !== undefined && (header.size !== opts.expect.size || header.mtime !== opts.expect.mtime)) {
          throw new SourceChangedError(`${url.href} changed: size ${opts.expect.size} → ${header.size}, mtime ${opts.expect.mtime} → ${header.mtime}`)
        }
        yield * reader.readBytes(header.length)
        const trailer = decode(DataTrailer, await reader.readFrame(), 'data trailer')
        if (!trailer.ok) throw fromErrorInfo(trailer.error)
        const sent = algorithm === 'blake3' ? trailer.blake3 : trailer.sha256
        if (sent !== undefined) opts.onDigest?.(sent)
        // Every byte and the trailer are in: a close that fails (the peer reset first) changes nothing read.
        await stream.close().catch(() => {})
      } catch (err) {
        stream.abort(toStaccatoError(err))
        throw toStaccatoError(err)
      }
    },

    async write (url): Promise<Writer> {
      throw new UnsupportedError(`cannot write to ${url.href} from here: the destination agent pulls, so run the transfer on it`)
    }
  }
}
