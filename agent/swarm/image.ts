import { createHash } from 'node:crypto'
import { ChecksumMismatchError, InvalidArgumentError, toStaccatoError } from '../../mesh/index.ts'
import type { ImageManifest, Manifest } from '../../mesh/index.ts'
import { blobUrl, imageBlobs, layoutImageOf, writeLayoutIndex } from '../../protocols/index.ts'
import type { OciPlugin, ProtocolPlugin, WriterAt } from '../../protocols/index.ts'
import type { Arrival } from '../arriving-blobs.ts'
import type { BlobIndex, BlobReader } from '../blob-index.ts'
import type { Resolved } from '../resolve.ts'
import { effectivePieceSize, pieceCount, pieceRange } from './manifest.ts'
import type { PieceStorage } from './storage.ts'

/**
 * An image distribution through the swarm: the object its pieces cut is the
 * image's blobs (config, then layers, each digest once) laid end to end. The
 * seed reads every blob from the registry once into its blob store while it
 * hashes the pieces; destinations write each blob into its own partial file
 * in their OCI layout, and commit the layout (blobs, manifest, index.json
 * last) once the whole object hashed right. Pieces may span two blobs: they
 * are split here, and the swarm's code does not know about blobs at all.
 */

interface Segment { blob: number, at: number, length: number }

/** The blobs' parts that `[offset, offset + length)` of the laid-out image covers. */
export function segments (blobs: ImageManifest['blobs'], offset: number, length: number): Segment[] {
  const out: Segment[] = []
  let start = 0
  for (let i = 0; i < blobs.length && length > 0; i++) {
    const end = start + blobs[i].size
    if (offset < end) {
      const at = offset - start
      const take = Math.min(length, blobs[i].size - at)
      out.push({ blob: i, at, length: take })
      offset += take
      length -= take
    }
    start = end
  }
  return out
}

/**
 * The bytes `[from, from + length)` of `chunks` laid end to end, as views of
 * them (a piece is split across blobs without being copied). Pure.
 */
export function sliceChunks (chunks: readonly Uint8Array[], from: number, length: number): Uint8Array[] {
  const out: Uint8Array[] = []
  let start = 0
  for (const c of chunks) {
    if (length <= 0) break
    const end = start + c.byteLength
    if (from < end) {
      const at = from - start
      const take = Math.min(length, c.byteLength - at)
      out.push(c.subarray(at, at + take))
      from += take
      length -= take
    }
    start = end
  }
  return out
}

/** The sha256 of every piece and of the whole, fed the object's bytes in order (an image's blobs, a tree's files). */
export class PieceHasher {
  readonly pieces: string[] = []
  private readonly whole = createHash('sha256')
  private piece = createHash('sha256')
  private inPiece = 0
  private readonly size: number
  constructor (size: number) {
    this.size = size
  }

  update (chunk: Uint8Array): void {
    this.whole.update(chunk)
    let at = 0
    while (at < chunk.byteLength) {
      const take = Math.min(this.size - this.inPiece, chunk.byteLength - at)
      this.piece.update(chunk.subarray(at, at + take))
      this.inPiece += take
      at += take
      if (this.inPiece === this.size) {
        this.pieces.push(this.piece.digest('hex'))
        this.piece = createHash('sha256')
        this.inPiece = 0
      }
    }
  }

  finish (): { pieces: string[], sha256: string } {
    if (this.inPiece > 0 || this.pieces.length === 0) this.pieces.push(this.piece.digest('hex'))
    return { pieces: this.pieces, sha256: this.whole.digest('hex') }
  }
}

/**
 * Blobs the seed reads from the registry at once. One read at a time left the
 * seed waiting on its socket about half the time (Node takes a 64 KiB read per
 * wake-up); 3 is what docker and skopeo pull with.
 */
const REGISTRY_READS = 3

/** Runs at most `n` tasks at once, in the order they were given. */
class Limit {
  private running = 0
  private readonly queue: Array<() => void> = []
  private readonly n: number
  constructor (n: number) {
    this.n = n
  }

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.running >= this.n) await new Promise<void>(resolve => { this.queue.push(resolve) })
    this.running++
    try {
      return await task()
    } finally {
      this.running--
      this.queue.shift()?.()
    }
  }
}

export interface ImageManifestOptions {
  plugin: OciPlugin
  url: URL
  pieceSize: number
  blobs: BlobIndex
  signal?: AbortSignal
  /** Bytes read from the registry (the registry egress). */
  onFetched: (bytes: number) => void
}

/**
 * On the seed: resolves the image and brings every blob it does not hold yet
 * into its blob store (each read from the registry once, checked against its
 * digest), hashing the pieces on the way.
 */
export async function imageManifest (o: ImageManifestOptions): Promise<Manifest> {
  const image = await o.plugin.resolveImage(o.url, o.signal)
  const { reference } = image
  const blobs = imageBlobs(image).map(d => ({ digest: d.digest, size: d.size }))
  const size = blobs.reduce((n, b) => n + b.size, 0)
  const pieceSize = effectivePieceSize(size, o.pieceSize)
  const hasher = new PieceHasher(pieceSize)
  let registryBytes = 0
  // Every blob not held yet is read from the registry into the store, a few at once; the pieces are hashed in
  // order from the store as each lands (the page cache still holds it).
  const fetch = new Limit(REGISTRY_READS)
  const fetched = blobs.map(b => fetch.run(async () => {
    // Another distribution (or the mirror) reading this blob from the registry right now: its copy will do.
    await o.blobs.settled(b.digest)
    if (await o.blobs.find(b.digest, b.size) !== undefined) return false
    const from = new URL(`oci://${reference.registry}/${reference.repository}@${b.digest}`)
    await o.blobs.put(b.digest, b.size, o.plugin.read(from, { offset: 0, signal: o.signal }), chunk => {
      registryBytes += chunk.byteLength
      o.onFetched(chunk.byteLength)
    }, { sourceChecksDigest: true })
    return true
  }))
  // Each is awaited in turn below; one failing while an earlier one is awaited is not an unhandled rejection.
  for (const f of fetched) f.catch(() => {})
  try {
    for (const [i, b] of blobs.entries()) {
      // Just read and checked against its digest by the plug-in, or held from before (then checked again here).
      const checked = await fetched[i]
      const held = await o.blobs.find(b.digest, b.size)
      if (held === undefined) throw new InvalidArgumentError(`${b.digest}: the seed no longer holds this blob`)
      const hash = checked ? undefined : createHash('sha256')
      // Hashed at once, before the next chunk is asked for: the reader may reuse its buffers.
      for await (const chunk of held.read(0, b.size, { reuseBuffers: true })) { hash?.update(chunk); hasher.update(chunk) }
      // A place that no longer holds the blob's bytes: this object cannot be built from it.
      if (hash !== undefined && `sha256:${hash.digest('hex')}` !== b.digest) throw new ChecksumMismatchError(`${b.digest}: the copy at ${held.place} no longer matches its digest`)
    }
  } finally {
    // A failure above leaves no read of the registry running behind it.
    await Promise.allSettled(fetched)
  }
  const named = layoutImageOf(image)
  const { pieces, sha256 } = hasher.finish()
  return {
    size,
    mtime: 0,
    pieceSize,
    sha256,
    pieces,
    image: {
      digest: named.digest,
      mediaType: named.mediaType,
      manifest: named.manifest.toString('base64'),
      ...(named.tag !== undefined ? { tag: named.tag } : {}),
      ...(named.platform !== undefined ? { platform: named.platform } : {}),
      blobs,
      registryBytes
    }
  }
}

/** The seed's pieces, read from wherever its blob index finds each blob. */
export function imageSourceStorage (manifest: Manifest, index: BlobIndex): PieceStorage {
  const image = manifest.image as ImageManifest
  const readers = new Map<number, BlobReader>()
  return {
    async read (offset, length) {
      const parts: Uint8Array[] = []
      for (const s of segments(image.blobs, offset, length)) {
        let reader = readers.get(s.blob)
        if (reader === undefined) {
          const b = image.blobs[s.blob]
          reader = await index.find(b.digest, b.size)
          if (reader === undefined) throw new InvalidArgumentError(`${b.digest}: the seed no longer holds this blob`)
          readers.set(s.blob, reader)
        }
        for await (const chunk of reader.read(s.at, s.length)) parts.push(chunk)
      }
      return parts
    }
  }
}

/** A destination's writer over the laid-out image, and which of its bytes it held before any piece came. */
export interface ImageWriterAt extends WriterAt {
  heldPieces(): number[]
}

export function isImageWriter (w: WriterAt): w is ImageWriterAt {
  return typeof (w as Partial<ImageWriterAt>).heldPieces === 'function'
}

export interface ImageWriterOptions {
  /** The layout directory (ends in '/'), resolved, and as the agent:// location it was given as. */
  dst: Resolved
  location: string
  key: string
  manifest: Manifest
  resume: boolean
  index: BlobIndex
}

/**
 * Opens a destination's layout for an image's pieces. A blob already in the
 * layout, or anywhere else the agent's blob index knows (copied in, hashed
 * on the way), is held from the start: its pieces are not fetched.
 */
export async function openImageWriter (o: ImageWriterOptions): Promise<ImageWriterAt> {
  const image = o.manifest.image as ImageManifest
  const { plugin, url: dir } = o.dst
  if (!dir.pathname.endsWith('/')) throw new InvalidArgumentError(`${o.location}: an image is written to a directory (end the destination with '/')`)
  if (plugin.capabilities.writeAt !== true || plugin.openWriterAt === undefined) throw new InvalidArgumentError(`the ${plugin.scheme} plug-in cannot hold an image distribution`)
  const held = new Set<number>()
  const writers = new Map<number, WriterAt>()
  try {
    for (const [i, b] of image.blobs.entries()) {
      const target = blobUrl(dir, b.digest)
      const there = await plugin.stat(target).catch(() => undefined)
      if (there?.size === b.size || await copyHeld(o, plugin, target, b)) {
        held.add(i)
        await o.index.add(b.digest, placeOf(o.location, b.digest))
        continue
      }
      writers.set(i, await plugin.openWriterAt(target, { key: `${o.key}-${b.digest.slice(7, 23)}`, size: b.size, resume: o.resume }))
    }
  } catch (err) {
    await Promise.all([...writers.values()].map(async w => await w.abort({ keepPartial: true }).catch(() => {})))
    throw toStaccatoError(err)
  }
  // Resumed partials hold bytes from before a restart that are not tracked here: those blobs are served once committed.
  const arrivals = new Map<number, Arrival>()
  for (const [i, w] of writers) {
    const a = w.resumed ? undefined : o.index.arriving.begin(image.blobs[i].digest, image.blobs[i].size, async (at, length) => await w.readAt(at, length))
    if (a !== undefined) arrivals.set(i, a)
  }
  return new LayoutWriterAt(o, image, held, writers, arrivals)
}

function placeOf (location: string, digest: string): string {
  return `${location}blobs/sha256/${digest.slice('sha256:'.length)}`
}

/** Copies a blob the agent holds elsewhere into the layout; false when it holds none (or the copy is not that blob). */
async function copyHeld (o: ImageWriterOptions, plugin: ProtocolPlugin, target: URL, b: { digest: string, size: number }): Promise<boolean> {
  const from = await o.index.find(b.digest, b.size)
  if (from === undefined) return false
  const writer = await plugin.write(target, { offset: 0, size: b.size, key: `${o.key}-copy-${b.digest.slice(7, 23)}` })
  try {
    const hash = createHash('sha256')
    for await (const chunk of from.read(0, b.size)) {
      hash.update(chunk)
      await writer.write(chunk)
    }
    if (`sha256:${hash.digest('hex')}` !== b.digest) {
      await writer.abort({ keepPartial: false })
      return false
    }
    await writer.commit()
    return true
  } catch (err) {
    await writer.abort({ keepPartial: false }).catch(() => {})
    throw err
  }
}

class LayoutWriterAt implements ImageWriterAt {
  readonly resumed: boolean
  private readonly o: ImageWriterOptions
  private readonly image: ImageManifest
  private readonly held: Set<number>
  private readonly writers: Map<number, WriterAt>
  /** The blobs this writer announced as arriving (another distribution may be writing the rest). */
  private readonly arrivals: Map<number, Arrival>
  constructor (o: ImageWriterOptions, image: ImageManifest, held: Set<number>, writers: Map<number, WriterAt>, arrivals: Map<number, Arrival>) {
    this.o = o
    this.image = image
    this.held = held
    this.writers = writers
    this.arrivals = arrivals
    this.resumed = [...writers.values()].some(w => w.resumed)
  }

  heldPieces (): number[] {
    const out: number[] = []
    for (let piece = 0; piece < pieceCount(this.o.manifest); piece++) {
      const { offset, length } = pieceRange(this.o.manifest, piece)
      if (segments(this.image.blobs, offset, length).every(s => this.held.has(s.blob))) out.push(piece)
    }
    return out
  }

  async writeAt (offset: number, chunks: Uint8Array[]): Promise<void> {
    const length = chunks.reduce((n, c) => n + c.byteLength, 0)
    let pos = 0
    for (const s of segments(this.image.blobs, offset, length)) {
      // A held blob is already whole and verified in the layout.
      await this.writers.get(s.blob)?.writeAt(s.at, sliceChunks(chunks, pos, s.length))
      // The session writes a piece only once it hashed to the manifest's piece hash: these bytes may be served now.
      this.arrivals.get(s.blob)?.written(s.at, s.length)
      pos += s.length
    }
  }

  async readAt (offset: number, length: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = []
    for (const s of segments(this.image.blobs, offset, length)) {
      const writer = this.writers.get(s.blob)
      if (writer !== undefined) {
        parts.push(await writer.readAt(s.at, s.length))
        continue
      }
      const target = blobUrl(this.o.dst.url, this.image.blobs[s.blob].digest)
      for await (const chunk of this.o.dst.plugin.read(target, { offset: s.at, length: s.length })) parts.push(chunk)
    }
    // Most ranges lie within one blob: no copy then (the session re-reads the whole image this way at the end).
    return parts.length === 1 ? parts[0] : Buffer.concat(parts)
  }

  async sync (): Promise<void> {
    for (const w of this.writers.values()) await w.sync()
  }

  /**
   * The session calls this once the whole object hashed to the manifest's
   * sha256, which the seed computed from blobs it checked against their
   * digests: each blob is then its digest's bytes. The manifest is checked
   * against its own digest and against the blob list before it is named.
   */
  async commit (): Promise<void> {
    const manifest = Buffer.from(this.image.manifest, 'base64')
    const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`
    if (digest !== this.image.digest) throw new ChecksumMismatchError(`the image manifest hashes to ${digest}, not ${this.image.digest}`)
    const named = manifestBlobs(manifest)
    if (named.some(d => !this.image.blobs.some(b => b.digest === d))) throw new ChecksumMismatchError('the image manifest names a blob the distribution does not carry')
    try {
      for (const [i, w] of this.writers) {
        const arrival = this.arrivals.get(i)
        await arrival?.committing()
        await w.commit()
        await this.o.index.add(this.image.blobs[i].digest, placeOf(this.o.location, this.image.blobs[i].digest))
        if (arrival !== undefined) this.o.index.arriving.end(arrival, true)
      }
    } catch (err) {
      // Readers held by a commit that did not happen are let go (they end their responses short).
      for (const a of this.arrivals.values()) this.o.index.arriving.end(a, false)
      throw err
    }
    await writeLayoutIndex({ dest: this.o.dst.plugin, dir: this.o.dst.url, key: this.o.key }, {
      manifest, digest, mediaType: this.image.mediaType, tag: this.image.tag, platform: this.image.platform
    })
  }

  async abort (opts?: { keepPartial?: boolean }): Promise<void> {
    for (const a of this.arrivals.values()) this.o.index.arriving.end(a, false)
    for (const w of this.writers.values()) await w.abort(opts)
  }
}

function manifestBlobs (bytes: Buffer): string[] {
  const parsed = JSON.parse(bytes.toString('utf8')) as { config?: { digest?: unknown }, layers?: Array<{ digest?: unknown }> }
  return [parsed.config?.digest, ...(parsed.layers ?? []).map(l => l.digest)].filter((d): d is string => typeof d === 'string')
}
