import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { ChecksumMismatchError, NetworkError, toStaccatoError } from '../mesh/index.ts'
import { ArrivingBlobs } from './arriving-blobs.ts'
import { resolveLocal } from './resolve.ts'
import type { PluginSet } from './resolve.ts'

/** Where a blob is: the agent's own store (a file in its data directory), or a file in one of its volumes (agent://…). */
type Place = 'store' | string

/** Bytes gathered into one write to the store: the file plug-in's read size, the same 1 MiB. */
const WRITE_BATCH = 1024 * 1024
/** Places remembered per digest: a layer shared by many layouts needs only a few to be found. */
const PLACES_KEPT = 4
const DIGEST = /^sha256:[0-9a-f]{64}$/

/**
 * The blobs an agent holds, by digest, whatever layout or distribution put
 * them there: the seed's copies of registry blobs (in its data directory) and
 * the blobs committed into OCI layouts in its volumes. A place is checked by
 * size when it is used (a file deleted or replaced since is skipped), and its
 * bytes are hashed wherever they are copied, so a stale entry costs a fetch,
 * never a wrong blob.
 */
export class BlobIndex {
  private readonly dir: string
  private readonly self: string
  private readonly plugins: PluginSet
  private places = new Map<string, Place[]>()
  private saving: Promise<void> = Promise.resolve()
  /** Blobs being put, by digest: a second reader of the same blob waits for the first instead of reading it again. */
  private readonly putting = new Map<string, Promise<void>>()
  /** Blobs image distributions are writing here now, readable piece by piece as they land (the registry mirror streams them). */
  readonly arriving = new ArrivingBlobs()

  private constructor (dir: string, self: string, plugins: PluginSet) {
    this.dir = dir
    this.self = self
    this.plugins = plugins
  }

  static async open (dir: string, self: string, plugins: PluginSet): Promise<BlobIndex> {
    const index = new BlobIndex(dir, self, plugins)
    await mkdir(join(dir, 'sha256'), { recursive: true })
    try {
      const saved = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as Record<string, Place[]>
      for (const [digest, places] of Object.entries(saved)) if (DIGEST.test(digest) && Array.isArray(places)) index.places.set(digest, places.filter(p => typeof p === 'string'))
    } catch {
      // No index yet, or a damaged one: blobs are found again as they are written.
    }
    return index
  }

  storePath (digest: string): string {
    return join(this.dir, 'sha256', digest.slice('sha256:'.length))
  }

  /** A reader of the blob's bytes from a place that still holds `size` bytes (any size when not given), or undefined. */
  async find (digest: string, size?: number): Promise<BlobReader | undefined> {
    for (const place of this.places.get(digest) ?? []) {
      const reader = await this.readerAt(digest, place, size).catch(() => undefined)
      if (reader !== undefined) return reader
    }
    return undefined
  }

  private async readerAt (digest: string, place: Place, size?: number): Promise<BlobReader | undefined> {
    if (place === 'store') return await this.fromStore(digest, size)
    const { plugin, url } = resolveLocal(place, this.self, this.plugins, 'blob')
    const found = (await plugin.stat(url)).size
    if (size !== undefined && found !== size) return undefined
    return { place, size: found, read: (offset, length, opts) => plugin.read(url, { offset, length, reuseBuffers: opts?.reuseBuffers }) }
  }

  /** The store's own copy, when it is whole. */
  private async fromStore (digest: string, size?: number): Promise<BlobReader | undefined> {
    const path = this.storePath(digest)
    const st = await stat(path).catch(() => undefined)
    if (st === undefined || (size !== undefined && st.size !== size)) return undefined
    return {
      place: 'store',
      size: st.size,
      // createReadStream's end is inclusive; an empty range reads nothing.
      read: (offset, length, opts) => length === 0 ? emptyChunks() : opts?.reuseBuffers === true ? readReusing(path, offset, length) : createReadStream(path, { start: offset, end: offset + length - 1, highWaterMark: READ_CHUNK })
    }
  }

  async add (digest: string, place: Place): Promise<void> {
    const places = [place, ...(this.places.get(digest) ?? []).filter(p => p !== place)].slice(0, PLACES_KEPT)
    this.places.set(digest, places)
    await this.save()
  }

  /** Saves the index atomically; saves are chained so that the last one wins. */
  private async save (): Promise<void> {
    const run = this.saving.then(async () => {
      const tmp = join(this.dir, `index.json.${randomBytes(4).toString('hex')}`)
      await writeFile(tmp, JSON.stringify(Object.fromEntries(this.places)))
      await rename(tmp, join(this.dir, 'index.json'))
    })
    this.saving = run.catch(() => {})
    await run
  }

  /** Resolves once no put of this digest is running (whatever its outcome). */
  async settled (digest: string): Promise<void> {
    await this.putting.get(digest)?.catch(() => {})
  }

  /**
   * Copies a blob into the store from `chunks`, visible under its digest only
   * once the bytes hash to it. `onChunk` sees every chunk as it arrives (the
   * seed hashes its pieces there). Chunks are written in batches, after the
   * next ones were taken: their producer must not reuse their buffers (a
   * socket's chunks are never reused).
   */
  async put (digest: string, size: number, chunks: AsyncIterable<Uint8Array>, onChunk: (chunk: Uint8Array) => void | Promise<void>, opts: PutOptions = {}): Promise<void> {
    const run = this.putNow(digest, size, chunks, onChunk, opts)
    this.putting.set(digest, run)
    try {
      await run
    } finally {
      if (this.putting.get(digest) === run) this.putting.delete(digest)
    }
  }

  private async putNow (digest: string, size: number, chunks: AsyncIterable<Uint8Array>, onChunk: (chunk: Uint8Array) => void | Promise<void>, opts: PutOptions): Promise<void> {
    const path = this.storePath(digest)
    const tmp = `${path}.${randomBytes(4).toString('hex')}.partial`
    const fh = await open(tmp, 'w')
    const hash = opts.sourceChecksDigest === true ? undefined : createHash('sha256')
    const file = new BatchedWrites(fh)
    let n = 0
    try {
      for await (const chunk of chunks) {
        await file.write(chunk)
        hash?.update(chunk)
        await onChunk(chunk)
        n += chunk.byteLength
      }
      await file.flush()
      await fh.sync()
      await fh.close()
      if (n !== size) throw new NetworkError(`${digest}: ${n} bytes arrived, the manifest says ${size}`)
      const got = hash === undefined ? digest : `sha256:${hash.digest('hex')}`
      if (got !== digest) throw new ChecksumMismatchError(`${digest}: the blob's bytes hash to ${got}`)
      await rename(tmp, path)
    } catch (err) {
      await file.settle()
      await fh.close().catch(() => {})
      await rm(tmp, { force: true })
      throw toStaccatoError(err)
    }
    await this.add(digest, 'store')
  }
}

export interface PutOptions {
  /**
   * The chunks' source checks the whole blob against its digest and throws
   * (after its last chunk, before it ends) when they differ — the oci
   * plug-in's read of a whole blob does. The bytes are then not hashed here
   * a second time: on the seed that pass was a quarter of its CPU.
   */
  sourceChecksDigest?: boolean
}

/**
 * A registry's chunks (64 KiB socket reads) gathered into writes of about
 * WRITE_BATCH, with one write in flight while the next batch is read: a
 * thread-pool round trip per small chunk held the read back.
 */
class BatchedWrites {
  private readonly fh: FileHandle
  private parts: Uint8Array[] = []
  private bytes = 0
  private inFlight?: Promise<void>

  constructor (fh: FileHandle) {
    this.fh = fh
  }

  async write (chunk: Uint8Array): Promise<void> {
    this.parts.push(chunk)
    this.bytes += chunk.byteLength
    if (this.bytes >= WRITE_BATCH) await this.flush(false)
  }

  /** Writes what is gathered; with `wait`, also waits for it to be written. */
  async flush (wait = true): Promise<void> {
    await this.inFlight
    this.inFlight = undefined
    if (this.bytes > 0) {
      const parts = this.parts
      const expected = this.bytes
      this.parts = []
      this.bytes = 0
      const write = this.fh.writev(parts).then(({ bytesWritten }) => {
        // A regular file takes the whole of a writev or fails; anything else is not a copy to keep.
        if (bytesWritten !== expected) throw new NetworkError(`a short write to the blob store (${bytesWritten} of ${expected} bytes)`)
      })
      // Observed by the next flush (or settle); not an unhandled rejection meanwhile.
      write.catch(() => {})
      this.inFlight = write
    }
    if (wait) await this.inFlight
  }

  /** Waits for a write in flight, whatever its outcome (before the file is closed on a failure). */
  async settle (): Promise<void> {
    await this.inFlight?.catch(() => {})
  }
}

export interface BlobReader {
  place: Place
  size: number
  /**
   * With `reuseBuffers`, the caller is done with each chunk before it asks for
   * the next (ReadOptions.reuseBuffers): two buffers take turns instead of a
   * new one per chunk, whose collection was the largest cost of serving a
   * blob after the copy itself.
   */
  read(offset: number, length: number, opts?: { reuseBuffers?: boolean }): AsyncIterable<Uint8Array>
}

/** The store's reads, as the file plug-in's: 1 MiB, one read ahead. */
const READ_CHUNK = 1024 * 1024

/** A range of a store file in READ_CHUNK reads into two buffers that take turns, one read ahead. */
async function * readReusing (path: string, offset: number, length: number): AsyncIterable<Uint8Array> {
  const fh = await open(path, 'r')
  try {
    const pool = [Buffer.allocUnsafe(READ_CHUNK), Buffer.allocUnsafe(READ_CHUNK)]
    let turn = 0
    let at = offset
    const end = offset + length
    const readAt = (pos: number): Promise<Uint8Array> => {
      const buffer = pool[turn++ % 2].subarray(0, Math.min(READ_CHUNK, end - pos))
      const read = fh.read(buffer, 0, buffer.length, pos).then(r => {
        if (r.bytesRead === 0) throw new NetworkError(`${path}: shrank while being read`)
        return buffer.subarray(0, r.bytesRead)
      })
      // A consumer that stops early never awaits it; close() still waits for it.
      read.catch(() => {})
      return read
    }
    let next = readAt(at)
    // Bounded: every round moves `at` on by at least a byte, or throws.
    while (at < end) {
      const chunk = await next
      at += chunk.byteLength
      if (at < end) next = readAt(at)
      yield chunk
    }
  } finally {
    await fh.close()
  }
}

async function * emptyChunks (): AsyncIterable<Uint8Array> {}
