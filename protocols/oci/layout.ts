import { createHash } from 'node:crypto'
import { ChecksumMismatchError, InvalidArgumentError, NetworkError, NotFoundError, SourceChangedError, toStaccatoError } from '../../mesh/index.ts'
import type { ProtocolPlugin, Writer } from '../contract.ts'
import { MEDIA, asOciManifest } from './manifest.ts'
import type { Descriptor } from './manifest.ts'
import type { OciPlugin } from './plugin.ts'
import type { ResolvedImage } from './client.ts'
import type { ImageReference, Platform } from './reference.ts'

/** What the OCI image-layout spec puts in `oci-layout`. */
const LAYOUT_FILE = JSON.stringify({ imageLayoutVersion: '1.0.0' })
/** The annotation that names a manifest in a layout's index.json (what `skopeo … oci:DIR:tag` looks up). */
const REF_NAME = 'org.opencontainers.image.ref.name'

/** How far a blob's partial file is durable, and the sha256 of the bytes before that offset. */
export interface BlobCheckpoint {
  digest: string
  offset: number
  prefixSha256: string
}

export interface LayoutCopyOptions {
  source: OciPlugin
  /** oci://registry/repo:tag or …@sha256:<manifest or index>. */
  url: URL
  /** The destination directory's plug-in and URL (ending in '/'): the layout goes there. */
  dest: ProtocolPlugin
  dir: URL
  /** Stable per transfer: names each blob's partial file, so that a later attempt finds it. */
  key: string
  signal?: AbortSignal
  /** Called with every chunk before it is written (a rate limit, counters). */
  onChunk?: (bytes: number) => Promise<void>
  onProgress?: (done: number, total: number) => void
  /** Where an earlier attempt stopped in a blob: that blob continues from there if its partial still holds those bytes. */
  resume?: BlobCheckpoint
  /** Called after a blob's partial was synced, every `syncEveryBytes` (default: only at the end of a blob). */
  checkpoint?: (c: BlobCheckpoint) => Promise<void>
  syncEveryBytes?: number
}

export interface LayoutCopyResult {
  /** The manifest's digest: what the layout's index.json names. */
  digest: string
  /** The digest of the manifest in the registry, when the layout holds another (a Docker schema 2 manifest is converted to OCI). */
  registryDigest: string
  /** Bytes of the image (manifest, config, layers). */
  bytes: number
  /** Bytes read from the registry (blobs the layout already held are not read again). */
  fetched: number
  /** The config and layers the layout now holds for this image. */
  blobs: Descriptor[]
}

/**
 * Copies one image into an OCI image layout: every blob through a partial
 * file, visible only once its bytes match its digest; the manifest; then
 * `oci-layout`; `index.json` last, so that a layout never names a blob it
 * does not hold. A blob already in the layout (this image earlier, or
 * another image sharing a layer) is not fetched again.
 */
export async function copyImageToLayout (o: LayoutCopyOptions): Promise<LayoutCopyResult> {
  if (!o.dir.pathname.endsWith('/')) throw new InvalidArgumentError(`${o.dir.href}: an image is written to a directory (end the destination with '/')`)
  const image = await o.source.resolveImage(o.url, o.signal)
  const { reference } = image
  const blobs = imageBlobs(image)
  const total = image.bytes.length + blobs.reduce((n, d) => n + d.size, 0)
  let done = 0
  let fetched = 0
  for (const d of blobs) {
    const target = blobUrl(o.dir, d.digest)
    const there = await o.dest.stat(target, { signal: o.signal }).catch(() => undefined)
    if (there?.size !== d.size) {
      const from = new URL(`oci://${reference.registry}/${reference.repository}@${d.digest}`)
      fetched += await copyBlob(o, from, target, d, n => { done += n; o.onProgress?.(done, total) })
    } else {
      done += d.size
    }
    o.onProgress?.(done, total)
  }
  const named = layoutImageOf(image)
  await writeLayoutIndex({ dest: o.dest, dir: o.dir, key: o.key, signal: o.signal }, named)
  done += image.bytes.length
  o.onProgress?.(done, total)
  return { digest: named.digest, registryDigest: image.digest, bytes: total - image.bytes.length + named.manifest.length, fetched, blobs }
}

/** What a layout's index names for one image: the manifest in its OCI form, with its tag and platform. */
export interface LayoutImage {
  /** The OCI-form manifest's bytes and digest. */
  manifest: Buffer
  digest: string
  mediaType: string
  tag?: string
  platform?: Platform
}

export function layoutImageOf (image: ResolvedImage & { reference: ImageReference }): LayoutImage {
  const manifest = asOciManifest(image.bytes, image.mediaType)
  const digest = manifest.converted ? `sha256:${createHash('sha256').update(manifest.bytes).digest('hex')}` : image.digest
  const { reference } = image
  const tag = reference.tag !== undefined && reference.digest === undefined ? reference.tag : undefined
  return { manifest: manifest.bytes, digest, mediaType: manifest.mediaType, ...(tag !== undefined ? { tag } : {}), ...(image.platform !== undefined ? { platform: image.platform } : {}) }
}

/**
 * The last steps of writing an image into a layout whose blobs are all in
 * place: the manifest blob, `oci-layout`, and `index.json` last.
 */
export async function writeLayoutIndex (o: Pick<LayoutCopyOptions, 'dest' | 'dir' | 'key' | 'signal'>, image: LayoutImage): Promise<void> {
  await writeSmall(o, blobUrl(o.dir, image.digest), image.manifest, 'manifest')
  const layoutFile = new URL('oci-layout', o.dir)
  if (await o.dest.stat(layoutFile, { signal: o.signal }).catch(() => undefined) === undefined) {
    await writeSmall(o, layoutFile, Buffer.from(LAYOUT_FILE), 'layout')
  }
  const indexUrl = new URL('index.json', o.dir)
  const existing = await readSmall(o, indexUrl)
  const entry: Descriptor = {
    mediaType: image.mediaType,
    digest: image.digest,
    size: image.manifest.length,
    ...(image.platform !== undefined ? { platform: image.platform } : {}),
    ...(image.tag !== undefined ? { annotations: { [REF_NAME]: image.tag } } : {})
  }
  await writeSmall(o, indexUrl, Buffer.from(JSON.stringify(layoutIndex(existing, entry))), 'index')
}

export function blobUrl (dir: URL, digest: string): URL {
  return new URL(`blobs/sha256/${digest.slice('sha256:'.length)}`, dir)
}

/** The config and the layers, each digest once, in that order. */
export function imageBlobs (image: Pick<ResolvedImage, 'config' | 'layers'>): Descriptor[] {
  return [...new Map([image.config, ...image.layers].map(d => [d.digest, d])).values()]
}

/**
 * The layout's index.json with `entry` added: an earlier entry of the same
 * tag (or, untagged, the same digest) is replaced; other images stay.
 */
export function layoutIndex (existing: Buffer | undefined, entry: Descriptor): { schemaVersion: 2, mediaType: string, manifests: Descriptor[] } {
  let manifests: Descriptor[] = []
  if (existing !== undefined) {
    try {
      const parsed = JSON.parse(existing.toString('utf8')) as { manifests?: unknown }
      if (Array.isArray(parsed.manifests)) manifests = parsed.manifests as Descriptor[]
    } catch {
      // A damaged index.json is replaced; the blobs it named stay on disk.
    }
  }
  const name = entry.annotations?.[REF_NAME]
  manifests = manifests.filter(m => name !== undefined ? m.annotations?.[REF_NAME] !== name : m.digest !== entry.digest || m.annotations?.[REF_NAME] !== undefined)
  return { schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: [...manifests, entry] }
}

/**
 * One blob into its partial file, then renamed into place once its bytes
 * hash to its digest. A checkpoint of an earlier attempt is used when the
 * partial still holds the bytes it names (read back and hashed); a
 * retryable failure keeps the partial for the next attempt.
 */
async function copyBlob (o: LayoutCopyOptions, from: URL, target: URL, d: Descriptor, onBytes: (n: number) => void): Promise<number> {
  const hex = d.digest.slice('sha256:'.length)
  const open = async (offset: number): Promise<Writer> => await o.dest.write(target, { offset, size: d.size, key: `${o.key}-${hex.slice(0, 16)}`, signal: o.signal })
  const resumed = await reopen(o, d, open)
  const { hash, offset } = resumed
  const writer = resumed.writer ?? await open(0)
  if (offset > 0) onBytes(offset)
  try {
    let n = offset
    let sinceSync = 0
    for await (const chunk of o.source.read(from, { offset, signal: o.signal })) {
      await o.onChunk?.(chunk.byteLength)
      await writer.write(chunk)
      hash.update(chunk)
      n += chunk.byteLength
      sinceSync += chunk.byteLength
      onBytes(chunk.byteLength)
      if (o.checkpoint !== undefined && o.syncEveryBytes !== undefined && sinceSync >= o.syncEveryBytes) {
        const durable = await writer.sync()
        if (durable >= n) await o.checkpoint({ digest: d.digest, offset: n, prefixSha256: hash.copy().digest('hex') })
        sinceSync = 0
      }
    }
    if (n !== d.size) throw new NetworkError(`${from.href}: the registry sent ${n} bytes, the manifest says ${d.size}`)
    const got = hash.digest('hex')
    if (got !== hex) throw new ChecksumMismatchError(`${from.href}: the blob's bytes hash to sha256:${got}`)
    await writer.commit()
    return n - offset
  } catch (err) {
    const e = toStaccatoError(err)
    // The copy's error is what the caller needs; an abort that fails leaves a partial the next attempt replaces.
    await writer.abort({ keepPartial: e.retryable && !(e instanceof SourceChangedError) }).catch(() => {})
    throw e
  }
}

/** The writer and hash state to continue a blob from a checkpoint, or a fresh start when it cannot be trusted. */
async function reopen (o: LayoutCopyOptions, d: Descriptor, open: (offset: number) => Promise<Writer>): Promise<{ writer?: Writer, hash: ReturnType<typeof createHash>, offset: number }> {
  const c = o.resume
  if (c?.digest !== d.digest || c.offset <= 0 || c.offset >= d.size) return { hash: createHash('sha256'), offset: 0 }
  let writer: Writer | undefined
  try {
    writer = await open(c.offset)
    const hash = createHash('sha256')
    if (writer.readPartial !== undefined) {
      for await (const chunk of writer.readPartial({ signal: o.signal })) hash.update(chunk)
      if (hash.copy().digest('hex') === c.prefixSha256) return { writer, hash, offset: c.offset }
    }
    await writer.abort({ keepPartial: false })
  } catch {
    // Best effort, as above: a partial left behind is replaced by the next attempt.
    await writer?.abort({ keepPartial: false }).catch(() => {})
  }
  return { hash: createHash('sha256'), offset: 0 }
}

async function writeSmall (o: Pick<LayoutCopyOptions, 'dest' | 'key' | 'signal'>, target: URL, bytes: Buffer, what: string): Promise<void> {
  const writer = await o.dest.write(target, { offset: 0, size: bytes.length, key: `${o.key}-${what}`, signal: o.signal })
  try {
    await writer.write(bytes)
    await writer.commit()
  } catch (err) {
    await writer.abort({ keepPartial: false }).catch(() => {})
    throw err
  }
}

async function readSmall (o: Pick<LayoutCopyOptions, 'dest' | 'signal'>, url: URL): Promise<Buffer | undefined> {
  const chunks: Uint8Array[] = []
  try {
    for await (const chunk of o.dest.read(url, { offset: 0, signal: o.signal })) chunks.push(chunk)
  } catch (err) {
    if (toStaccatoError(err) instanceof NotFoundError) return undefined
    throw err
  }
  return Buffer.concat(chunks)
}
