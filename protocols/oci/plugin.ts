import { createHash } from 'node:crypto'
import { ChecksumMismatchError, UnsupportedError } from '../../mesh/index.ts'
import type { ProtocolPlugin, ReadOptions, StatResult } from '../contract.ts'
import { createContext } from '../http-client.ts'
import { readHttp, versionFromHeaders } from '../http-read.ts'
import { assertVersion, checkRange } from '../util.ts'
import type { RegistryConfig } from './auth.ts'
import { RegistryClient, registryError } from './client.ts'
import type { ResolvedImage } from './client.ts'
import { ownPlatform, parseReference } from './reference.ts'
import type { ImageReference, Platform } from './reference.ts'

export interface OciOptions {
  /** Settings and credentials per registry host[:port]. */
  registries?: Readonly<Record<string, RegistryConfig>>
  /** As the http plug-in's: address classes or ranges a registry (and its token realm) may be on although refused by default. */
  allowAddresses?: string[]
  /** The platform picked from an image index when the URL names none; the agent's own by default. */
  platform?: Platform
  /** As the http plug-in's (attempts after a network failure, first back-off in ms). */
  retries?: number
  retryDelay?: number
}

/** The oci plug-in: a ProtocolPlugin, and the resolved image behind a reference for whoever copies whole images. */
export interface OciPlugin extends ProtocolPlugin {
  /** The manifest a reference names (an index resolved to one platform), checked against its digest. */
  resolveImage(url: URL, signal?: AbortSignal): Promise<ResolvedImage & { reference: ImageReference }>
  /** The manifest or index a reference names, unresolved (for a registry mirror), checked against its digest. */
  manifest(url: URL, signal?: AbortSignal): Promise<{ bytes: Buffer, digest: string, mediaType: string }>
}

/** Digests remembered as blobs (seen in a manifest), so that reading one does not first ask for a manifest of that digest. */
const KNOWN_BLOBS = 10_000

/**
 * oci://host[:port]/repo:tag, …/repo@sha256:… — images in registries that
 * speak the OCI distribution API (Docker Registry HTTP API v2). A tag, or
 * the digest of a manifest or index, reads as the manifest it resolves to
 * (for an index, the one for `?platform=` or the agent's own platform); the
 * digest of a blob reads as that blob, with Range, checked against its digest.
 */
export function oci (opts: OciOptions = {}): OciPlugin {
  const ctx = createContext({ allowAddresses: opts.allowAddresses, retries: opts.retries, retryDelay: opts.retryDelay })
  const client = new RegistryClient(ctx, opts.registries ?? {})
  const platform = opts.platform ?? ownPlatform()
  const blobs = new Set<string>()

  const remember = (image: ResolvedImage): void => {
    if (blobs.size > KNOWN_BLOBS) blobs.clear()
    for (const d of [image.config, ...image.layers]) blobs.add(d.digest)
  }

  /**
   * Whether a digest reference names a blob: known from a manifest, or the
   * repository holds a blob of that digest. (Asking for a manifest first
   * does not work: distribution answers 500, not 404, for a layer's digest.)
   */
  const isBlob = async (ref: ImageReference, signal?: AbortSignal): Promise<boolean> => {
    if (ref.digest === undefined) return false
    if (blobs.has(ref.digest)) return true
    const res = await client.request(ref, `blobs/${ref.digest}`, 'HEAD', {}, signal)
    res.resume()
    return res.statusCode === 200
  }

  const statBlob = async (ref: ImageReference, signal?: AbortSignal): Promise<StatResult> => {
    const digest = ref.digest as string
    const what = `blob ${ref.registry}/${ref.repository}@${digest}`
    // This request answers any challenge; the ranged reads then carry its credentials.
    const res = await client.request(ref, `blobs/${digest}`, 'HEAD', {}, signal)
    res.resume()
    if (res.statusCode !== 200) throw registryError(res.statusCode ?? 0, Buffer.alloc(0), what)
    const length = Number(res.headers['content-length'])
    if (!Number.isSafeInteger(length)) throw new UnsupportedError(`${what}: the registry sent no Content-Length`)
    return { ...versionFromHeaders(res, length), sha256: digest.slice('sha256:'.length) }
  }

  const resolveImage = async (url: URL, signal?: AbortSignal): Promise<ResolvedImage & { reference: ImageReference }> => {
    const reference = parseReference(url)
    const image = await client.resolve(reference, platform, signal)
    remember(image)
    return { ...image, reference }
  }

  return {
    scheme: 'oci',
    // Blobs resume with Range; stat names each object's sha256 (its digest). Registries are read, never written here.
    capabilities: { read: true, write: false, resume: true, list: false, checksum: true },
    resolveImage,

    async manifest (url, signal) {
      const got = await client.rawManifest(parseReference(url), signal)
      if (got.parsed.kind === 'manifest') remember({ ...got, config: got.parsed.config, layers: got.parsed.layers })
      return { bytes: got.bytes, digest: got.digest, mediaType: got.mediaType }
    },

    async stat (url, o) {
      const ref = parseReference(url)
      if (await isBlob(ref, o?.signal)) return await statBlob(ref, o?.signal)
      const image = await resolveImage(url, o?.signal)
      return { size: image.bytes.length, mtime: 0, etag: image.digest, sha256: image.digest.slice('sha256:'.length) }
    },

    async * read (url: URL, o: ReadOptions) {
      const ref = parseReference(url)
      if (!await isBlob(ref, o.signal)) {
        const image = await resolveImage(url, o.signal)
        const found = { size: image.bytes.length, mtime: 0, etag: image.digest }
        assertVersion(`${url.href}`, o.expect, found)
        const n = checkRange(url, found.size, o)
        if (n > 0) yield image.bytes.subarray(o.offset, o.offset + n)
        return
      }
      const st = await statBlob(ref, o.signal)
      assertVersion(url.href, o.expect, st)
      const whole = o.offset === 0 && (o.length === undefined || o.length >= st.size)
      const hash = whole ? createHash('sha256') : undefined
      const blobUrl = client.url(ref, `blobs/${ref.digest as string}`)
      for await (const chunk of readHttp(client.authorized(ref), blobUrl, { ...o, expect: o.expect ?? st })) {
        hash?.update(chunk)
        yield chunk
      }
      // A read of the whole blob is checked here; a read from an offset is checked by whoever holds the prefix (stat gives the digest).
      const got = hash?.digest('hex')
      if (got !== undefined && got !== st.sha256) throw new ChecksumMismatchError(`blob ${ref.registry}/${ref.repository}@${ref.digest as string}: the registry sent bytes that hash to sha256:${got}`)
    },

    async write (url) {
      throw new UnsupportedError(`${url.href}: the oci plug-in reads from registries; it does not push (write to an OCI layout directory instead)`)
    },

    async close () {
      ctx.agents.http.destroy()
      ctx.agents.https.destroy()
    }
  }
}
