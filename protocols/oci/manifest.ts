import { InvalidArgumentError, NotFoundError } from '../../mesh/index.ts'
import { formatPlatform } from './reference.ts'
import type { Platform } from './reference.ts'

/** The manifest media types of the OCI image spec and of Docker's image manifest v2, schema 2. */
export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json'
} as const

/** The Accept header of a manifest request: every type this plug-in understands (a registry may convert otherwise). */
export const MANIFEST_ACCEPT = Object.values(MEDIA).join(', ')

const INDEX_TYPES = new Set<string>([MEDIA.ociIndex, MEDIA.dockerList])
const MANIFEST_TYPES = new Set<string>([MEDIA.ociManifest, MEDIA.dockerManifest])

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: Platform
  annotations?: Record<string, string>
}

export type Parsed =
  | { kind: 'index', mediaType: string, manifests: Descriptor[] }
  | { kind: 'manifest', mediaType: string, config: Descriptor, layers: Descriptor[] }

const DIGEST = /^sha256:[a-f0-9]{64}$/

function descriptor (value: unknown, what: string): Descriptor {
  const d = value as Partial<Descriptor> | null
  if (typeof d !== 'object' || d === null || typeof d.digest !== 'string' || !DIGEST.test(d.digest) ||
    typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new InvalidArgumentError(`${what}: a descriptor without a sha256 digest and a size`)
  }
  return { mediaType: typeof d.mediaType === 'string' ? d.mediaType : '', digest: d.digest, size: d.size, platform: d.platform, annotations: d.annotations }
}

/**
 * A manifest or index as the registry sent it. The media type comes from the
 * body when it names one, else from Content-Type (schema 2 bodies carry it;
 * OCI bodies may not).
 */
export function parseManifest (bytes: Uint8Array, contentType: string | undefined, what: string): Parsed {
  let body: Record<string, unknown>
  try {
    body = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>
  } catch {
    throw new InvalidArgumentError(`${what}: the manifest is not JSON`)
  }
  const mediaType = typeof body.mediaType === 'string' ? body.mediaType : (contentType ?? '').split(';')[0].trim()
  if (INDEX_TYPES.has(mediaType) || (mediaType === '' && Array.isArray(body.manifests))) {
    if (!Array.isArray(body.manifests)) throw new InvalidArgumentError(`${what}: an index without manifests`)
    return { kind: 'index', mediaType: mediaType === '' ? MEDIA.ociIndex : mediaType, manifests: body.manifests.map((m, i) => descriptor(m, `${what}: manifests[${i}]`)) }
  }
  if (MANIFEST_TYPES.has(mediaType) || (mediaType === '' && Array.isArray(body.layers))) {
    if (!Array.isArray(body.layers)) throw new InvalidArgumentError(`${what}: a manifest without layers`)
    return {
      kind: 'manifest',
      mediaType: mediaType === '' ? MEDIA.ociManifest : mediaType,
      config: descriptor(body.config, `${what}: config`),
      layers: body.layers.map((l, i) => descriptor(l, `${what}: layers[${i}]`))
    }
  }
  throw new InvalidArgumentError(`${what}: unsupported manifest type '${mediaType}' (Docker schema 1 and other types are not read; expected ${[...MANIFEST_TYPES, ...INDEX_TYPES].join(', ')})`)
}

/**
 * The index entry for a platform: os and architecture must match, and the
 * variant too when one is asked for (containerd's matcher does the same;
 * without a variant the first entry of the architecture wins).
 */
export function selectPlatform (manifests: readonly Descriptor[], want: Platform, what: string): Descriptor {
  const candidates = manifests.filter(m => m.platform?.os === want.os && m.platform.architecture === want.architecture)
  const found = want.variant === undefined ? candidates[0] : candidates.find(m => m.platform?.variant === want.variant)
  if (found !== undefined) return found
  const have = manifests.map(m => m.platform === undefined ? '(no platform)' : formatPlatform(m.platform))
  throw new NotFoundError(`${what}: the image index has no manifest for ${formatPlatform(want)} (it has: ${have.join(', ') || 'none'}); ask for another with ?platform=os/arch`)
}

/** Docker schema 2 media types and their OCI equivalents (the image spec's conversion table; skopeo converts the same way). */
const DOCKER_TO_OCI: Record<string, string> = {
  [MEDIA.dockerManifest]: MEDIA.ociManifest,
  'application/vnd.docker.container.image.v1+json': 'application/vnd.oci.image.config.v1+json',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'
}

/**
 * A Docker schema 2 manifest rewritten as an OCI manifest over the same
 * config and layer blobs (an OCI layout names only OCI manifests: skopeo's
 * layout reader skips any other descriptor). An OCI manifest comes back as it is.
 */
export function asOciManifest (bytes: Buffer, mediaType: string): { bytes: Buffer, mediaType: string, converted: boolean } {
  if (mediaType !== MEDIA.dockerManifest) return { bytes, mediaType, converted: false }
  const body = JSON.parse(bytes.toString('utf8')) as { config: Descriptor, layers: Descriptor[], annotations?: Record<string, string> }
  const convert = (d: Descriptor): Descriptor => ({ mediaType: DOCKER_TO_OCI[d.mediaType] ?? d.mediaType, digest: d.digest, size: d.size, ...(d.annotations !== undefined ? { annotations: d.annotations } : {}) })
  const oci = { schemaVersion: 2, mediaType: MEDIA.ociManifest, config: convert(body.config), layers: body.layers.map(convert), ...(body.annotations !== undefined ? { annotations: body.annotations } : {}) }
  return { bytes: Buffer.from(JSON.stringify(oci)), mediaType: MEDIA.ociManifest, converted: true }
}
