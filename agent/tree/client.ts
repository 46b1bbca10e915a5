import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import type { Socket } from 'node:net'
import { FrameReader, InvalidArgumentError, ProtocolError, TREE_BATCH, TREE_PROTOCOL, TYPE_END, TreeMessage, WIRE_VERSION, decode, ephemeral, fromErrorInfo, sendFrame, toStaccatoError } from '../../mesh/index.ts'
import type { Ephemeral, MeshNode, RecordReader, StaccatoError, TreeEntry, TreeOptions, TreeRequest } from '../../mesh/index.ts'
import { connectOffered } from '../../protocols/index.ts'
import { LARGE_FILE_BYTES } from './policy.ts'

export interface TreePeer {
  node: MeshNode
  peerId: string
  addrs: string[]
  ticket: string
  /** The tree's location on that agent (ends with '/'), as the ticket names it. */
  source: string
}

export interface FileRun { path: string, size: number, mtime: number, length: number }

/** What the reader does with each file of a `read` batch; file() must consume every chunk. */
export interface ReadHandler {
  file: (run: FileRun, chunks: AsyncIterable<Uint8Array>) => Promise<void>
  end: (path: string, digest: { sha256?: string, blake3?: string }) => Promise<void>
  /** `now`: the file's version when it changed since it was listed or while it was read (it may be asked for again). */
  error: (path: string, err: StaccatoError, now?: { size: number, mtime: number }) => Promise<void>
  /**
   * Small whole files packed (a `files` message): `bytes` holds their contents
   * one after the other, each `size` bytes. A handler that has it is sent packs.
   */
  files?: (runs: PackedFile[], bytes: Uint8Array) => Promise<void>
}

export type PackedFile = Extract<TreeMessage, { t: 'files' }>['files'][number]

/** A pack's bytes as one array: as they came when they came in one chunk, else copied once. */
export async function packBytes (chunks: AsyncIterable<Uint8Array>, length: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) parts.push(chunk)
  if (parts.length === 1) return parts[0]
  return Buffer.concat(parts, length)
}

async function open (peer: TreePeer, req: TreeRequest, signal?: AbortSignal): Promise<{ stream: Stream, reader: FrameReader }> {
  const addrs = peer.addrs.map(a => multiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${peer.peerId}`))
  let stream: Stream
  try {
    stream = await peer.node.dialProtocol(addrs, TREE_PROTOCOL, { signal })
  } catch (err) {
    throw toStaccatoError(err)
  }
  await sendFrame(stream, req, signal)
  return { stream, reader: new FrameReader(stream) }
}

async function next (reader: FrameReader): Promise<TreeMessage> {
  const m = decode(TreeMessage, await reader.readFrame(), 'tree message')
  if (m.t === 'error') throw fromErrorInfo(m.error)
  return m
}

/** The tree's entries as the holder lists them (a message's at a time), selected there by the include and exclude globs. */
export async function * listTree (peer: TreePeer, filter: TreeOptions, signal?: AbortSignal): AsyncGenerator<TreeEntry[]> {
  const { stream, reader } = await open(peer, { v: WIRE_VERSION, op: 'list', ticket: peer.ticket, source: peer.source, include: filter.include, exclude: filter.exclude, ...(filter.links === 'copy' ? { links: 'copy' as const } : {}) }, signal)
  try {
    for (;;) {
      signal?.throwIfAborted()
      const m = await next(reader)
      if (m.t === 'end') break
      if (m.t !== 'entries') throw new ProtocolError(`tree listing: a '${m.t}' message where entries were expected`)
      yield m.entries
    }
    await stream.close().catch(() => {})
  } catch (err) {
    stream.abort(toStaccatoError(err))
    throw toStaccatoError(err)
  } finally {
    // A consumer that stops early (an abort) leaves nothing open.
    if (stream.status === 'open') stream.abort(new Error('listing abandoned'))
  }
}

/**
 * A batch holding at least this many bytes in large files is offered the
 * holder's direct data socket: there its bytes cost the two agents about
 * half the CPU of the libp2p stream (docs/benchmarks.md, #13), worth the extra
 * round trip and connection. Small files stay on the stream however many
 * there are: each would cost a few records of its own for little gain.
 */
export const DIRECT_BATCH_BYTES = 8 * 1024 * 1024

/**
 * Packed small files (`files` messages) of a batch that take the direct data
 * socket: there a pack of 64 costs one or two AES-GCM records, where on the
 * stream the muxer's frames, window updates and the channel's records cost
 * the receiver ~90 µs a 4 KiB file (its profile in bench:tree, docs/trees.md).
 * Under 256 KiB (64 × 4 KiB) the socket's set-up is not worth it.
 */
export const DIRECT_PACKED_BYTES = 256 * 1024
export { LARGE_FILE_BYTES }

/** One batch of files over one stream, back to back, each handed to the handler in turn; a large batch on the holder's data port. */
export async function readFiles (peer: TreePeer, files: Extract<TreeRequest, { op: 'read' }>['files'], algorithm: 'sha256' | 'blake3' | undefined, handler: ReadHandler, signal?: AbortSignal): Promise<void> {
  const bytes = files.reduce((n, f) => f.expect.size - f.offset >= LARGE_FILE_BYTES ? n + f.expect.size - f.offset : n, 0)
  // Packed small files: a pack is one record or two there, and the libp2p stream's muxer and channel cost more than its files.
  const packed = handler.files === undefined ? 0 : files.reduce((n, f) => f.offset === 0 && f.expect.size < LARGE_FILE_BYTES ? n + f.expect.size : n, 0)
  const own = bytes >= DIRECT_BATCH_BYTES || packed >= DIRECT_PACKED_BYTES ? ephemeral() : undefined
  const req = { v: WIRE_VERSION, op: 'read', ticket: peer.ticket, source: peer.source, files, ...(algorithm === undefined ? {} : { algorithm }) } as const
  const asked = { ...req, ...(handler.files === undefined ? {} : { packed: true }), ...(own === undefined ? {} : { direct: { pub: own.pub } }) }
  let { stream, reader } = await open(peer, asked, signal)
  let socket: Socket | undefined
  try {
    let first: TreeMessage | undefined
    if (own !== undefined || asked.packed === true || files.length > TREE_BATCH) {
      first = decode(TreeMessage, await reader.readFrame(), 'tree message')
      const refused = first.t === 'error' ? fromErrorInfo(first.error) : undefined
      if ((refused instanceof InvalidArgumentError || refused instanceof ProtocolError) && files.length > TREE_BATCH) {
        // A holder from before TREE_READ_FILES refuses more than TREE_BATCH files a request (its schema check): the
        // batch is asked again in requests of that many, one after another, each as any batch is (offers and packs).
        stream.abort(new Error('asking again in requests of TREE_BATCH files'))
        for (let i = 0; i < files.length; i += TREE_BATCH) await readFiles(peer, files.slice(i, i + TREE_BATCH), algorithm, handler, signal)
        return
      }
      if ((refused instanceof InvalidArgumentError || refused instanceof ProtocolError) && (own !== undefined || asked.packed === true)) {
        // A holder from before the direct socket or the packs refuses them as unknown fields (its schema check: a
        // protocol error): ask once more without them. A refusal for another reason comes again, and is reported.
        stream.abort(new Error('asking again without the direct socket and the packs'))
        ;({ stream, reader } = await open(peer, req, signal))
        first = undefined
      } else if (first.t === 'direct' && own !== undefined) {
        const direct = await onDirect(peer, stream, own, first.direct, signal)
        if (direct !== undefined) ({ socket, reader } = direct)
        first = undefined
      }
    }
    for (;;) {
      signal?.throwIfAborted()
      const m = first ?? await next(reader)
      first = undefined
      if (m.t === 'error') throw fromErrorInfo(m.error)
      if (m.t === 'end') break
      if (m.t === 'file') await handler.file({ path: m.path, size: m.size, mtime: m.mtime, length: m.length }, reader.readBytes(m.length))
      else if (m.t === 'file-end') await handler.end(m.path, { sha256: m.sha256, blake3: m.blake3 })
      else if (m.t === 'file-error') await handler.error(m.path, fromErrorInfo(m.error), m.now)
      else if (m.t === 'files' && handler.files !== undefined) await handler.files(m.files, await packBytes(reader.readBytes(m.length), m.length))
      else throw new ProtocolError(`tree read: an '${m.t}' message where files were expected`)
    }
    await stream.close().catch(() => {})
  } catch (err) {
    stream.abort(toStaccatoError(err))
    throw toStaccatoError(err)
  } finally {
    socket?.destroy()
  }
}

/** The batch's messages on the data port the holder offered; undefined when it cannot be reached (they then come on the stream). */
async function onDirect (peer: TreePeer, stream: Stream, own: Ephemeral, answer: Extract<TreeMessage, { t: 'direct' }>['direct'], signal?: AbortSignal): Promise<{ socket: Socket, reader: FrameReader } | undefined> {
  const connected = await connectOffered(peer.node, peer.peerId, stream, own, answer, signal)
  if (connected === undefined) return undefined
  return { socket: connected.socket, reader: new FrameReader(bodies(connected.records)) }
}

/** The records' bytes, in order; the end record (after which the holder sends nothing) ends them. */
async function * bodies (records: RecordReader): AsyncGenerator<Uint8Array> {
  for await (const record of records.records()) {
    if (record.type === TYPE_END) return
    yield record.body
  }
  throw new ProtocolError('direct data: no end record')
}
