import { createHash } from 'node:crypto'
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import { ChecksumMismatchError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from '../../mesh/index.ts'
import { requestWithRetry, statusError } from '../http-client.ts'
import type { HttpContext } from '../http-client.ts'
import { DEFAULT_TOKEN_SECONDS, basicHeader, parseChallenge, tokenUrl } from './auth.ts'
import type { Challenge, RegistryConfig } from './auth.ts'
import { MANIFEST_ACCEPT, parseManifest, selectPlatform } from './manifest.ts'
import type { Descriptor, Parsed } from './manifest.ts'
import { formatPlatform } from './reference.ts'
import type { ImageReference, Platform } from './reference.ts'

/** Largest manifest read: distribution's own limit for a manifest PUT (4 MiB). */
const MANIFEST_LIMIT = 4 << 20
/** A token is renewed this long before it expires, so that a request never goes out with one about to lapse. */
const TOKEN_MARGIN_MS = 10_000

export interface ResolvedImage {
  /** The manifest (never an index): the bytes as the registry sent them. */
  bytes: Buffer
  digest: string
  mediaType: string
  config: Descriptor
  layers: Descriptor[]
  /** The platform picked from an index, when the reference named one. */
  platform?: Platform
}

interface Token { header: string, expires: number }

/**
 * The read side of the OCI distribution API for one agent: manifests,
 * blobs, and the credentials each registry asks for. Credentials stay in
 * this object; no message it builds carries them.
 */
export class RegistryClient {
  private readonly tokens = new Map<string, Token>()
  private readonly ctx: HttpContext
  private readonly registries: Readonly<Record<string, RegistryConfig>>

  constructor (ctx: HttpContext, registries: Readonly<Record<string, RegistryConfig>>) {
    this.ctx = ctx
    this.registries = registries
  }

  url (ref: ImageReference, path: string): URL {
    const scheme = this.registries[ref.registry]?.insecure === true ? 'http' : 'https'
    return new URL(`${scheme}://${ref.registry}/v2/${ref.repository}/${path}`)
  }

  /**
   * A context whose requests carry this repository's credentials as they
   * stand after the last request (make one first), for the http plug-in's ranged reads.
   */
  authorized (ref: ImageReference): HttpContext {
    const header = this.authHeader(ref)
    return header === undefined ? this.ctx : { ...this.ctx, options: { ...this.ctx.options, headers: { ...this.ctx.options.headers, authorization: header } } }
  }

  /**
   * A GET or HEAD with this repository's credentials: on a 401 the challenge
   * is answered once (a token from the realm, or Basic), and a second 401
   * means the credentials do not give access.
   */
  async request (ref: ImageReference, path: string, method: 'GET' | 'HEAD', headers: OutgoingHttpHeaders, signal?: AbortSignal): Promise<IncomingMessage> {
    const url = this.url(ref, path)
    let fresh = false
    for (;;) {
      const auth = this.authHeader(ref)
      const res = await requestWithRetry(this.ctx, url, method, { ...headers, ...(auth !== undefined ? { authorization: auth } : {}) }, signal)
      if (res.statusCode !== 401) return res
      res.resume()
      const challenge = parseChallenge(header(res, 'www-authenticate'))
      if (fresh || challenge === undefined) throw this.refused(ref, `${method} ${url.href}`)
      await this.answer(ref, challenge, signal)
      fresh = true
    }
  }

  /** The manifest a reference names, checked against its digest; an index is resolved to the platform's manifest. */
  async resolve (ref: ImageReference, defaultPlatform: Platform, signal?: AbortSignal): Promise<ResolvedImage> {
    const what = `${ref.registry}/${ref.repository}${ref.digest !== undefined ? `@${ref.digest}` : `:${ref.tag ?? 'latest'}`}`
    const first = await this.manifest(ref, ref.digest ?? ref.tag ?? 'latest', what, signal)
    let got = first
    let platform: Platform | undefined
    if (first.parsed.kind === 'index') {
      platform = ref.platform ?? defaultPlatform
      const picked = selectPlatform(first.parsed.manifests, platform, what)
      got = await this.manifest(ref, picked.digest, `${what} (${formatPlatform(platform)})`, signal)
      if (got.parsed.kind !== 'manifest') throw new InvalidArgumentError(`${what}: the index entry for ${formatPlatform(platform)} is another index`)
    }
    const parsed = got.parsed as Extract<Parsed, { kind: 'manifest' }>
    return { bytes: got.bytes, digest: got.digest, mediaType: parsed.mediaType, config: parsed.config, layers: parsed.layers, platform }
  }

  /** The manifest or index a reference names, as the registry sent it (a mirror hands it on), checked against its digest. */
  async rawManifest (ref: ImageReference, signal?: AbortSignal): Promise<{ bytes: Buffer, digest: string, mediaType: string, parsed: Parsed }> {
    const reference = ref.digest ?? ref.tag ?? 'latest'
    const got = await this.manifest(ref, reference, `${ref.registry}/${ref.repository}${ref.digest !== undefined ? `@${reference}` : `:${reference}`}`, signal)
    return { ...got, mediaType: got.parsed.mediaType }
  }

  private async manifest (ref: ImageReference, reference: string, what: string, signal?: AbortSignal): Promise<{ bytes: Buffer, digest: string, parsed: Parsed }> {
    const res = await this.request(ref, `manifests/${reference}`, 'GET', { accept: MANIFEST_ACCEPT }, signal)
    const bytes = await readBody(res, MANIFEST_LIMIT, what)
    if (res.statusCode !== 200) throw registryError(res.statusCode ?? 0, bytes, `manifest ${what}`)
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    // A digest reference must name exactly these bytes; for a tag, the registry's own digest header must agree.
    const claimed = reference.startsWith('sha256:') ? reference : header(res, 'docker-content-digest')
    if (claimed !== undefined && claimed !== digest) throw new ChecksumMismatchError(`manifest ${what}: its bytes hash to ${digest}, not ${claimed}`)
    return { bytes, digest, parsed: parseManifest(bytes, header(res, 'content-type'), what) }
  }

  private authHeader (ref: ImageReference): string | undefined {
    const conf = this.registries[ref.registry]
    if (conf?.token !== undefined) return `Bearer ${conf.token}`
    const token = this.tokens.get(tokenKey(ref))
    if (token !== undefined && token.expires - TOKEN_MARGIN_MS > Date.now()) return token.header
    return undefined
  }

  private async answer (ref: ImageReference, challenge: Challenge, signal?: AbortSignal): Promise<void> {
    const conf = this.registries[ref.registry]
    const credentials = conf?.username !== undefined && conf.password !== undefined ? basicHeader(conf.username, conf.password) : undefined
    if (challenge.scheme === 'basic') {
      if (credentials === undefined) throw this.refused(ref, 'the registry asks for a username and password')
      this.tokens.set(tokenKey(ref), { header: credentials, expires: Number.POSITIVE_INFINITY })
      return
    }
    if (challenge.params.realm === undefined) throw new PermissionDeniedError(`${ref.registry}: a Bearer challenge without a realm`)
    const url = tokenUrl(challenge, `repository:${ref.repository}:pull`)
    const res = await requestWithRetry(this.ctx, url, 'GET', credentials !== undefined ? { authorization: credentials } : {}, signal)
    const body = await readBody(res, 1 << 20, `token for ${ref.registry}`)
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw new PermissionDeniedError(`${ref.registry}: the token service refused the credentials configured for this registry (HTTP ${res.statusCode})`)
    }
    if (res.statusCode !== 200) throw statusError(res.statusCode ?? 0, `token for ${ref.registry}`)
    let parsed: { token?: unknown, access_token?: unknown, expires_in?: unknown }
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed
    } catch {
      throw new PermissionDeniedError(`${ref.registry}: the token service answered with something other than JSON`)
    }
    const token = typeof parsed.token === 'string' ? parsed.token : parsed.access_token
    if (typeof token !== 'string' || token === '') throw new PermissionDeniedError(`${ref.registry}: the token service sent no token`)
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_SECONDS
    this.tokens.set(tokenKey(ref), { header: `Bearer ${token}`, expires: Date.now() + seconds * 1000 })
  }

  private refused (ref: ImageReference, what: string): PermissionDeniedError {
    const conf = this.registries[ref.registry]
    const has = conf?.token !== undefined || (conf?.username !== undefined && conf.password !== undefined)
    return new PermissionDeniedError(has
      ? `${what}: the credentials configured for ${ref.registry} do not give pull access to ${ref.repository}`
      : `${what}: ${ref.registry}/${ref.repository} needs credentials, and this agent has none for ${ref.registry} (registries in its configuration)`)
  }
}

function tokenKey (ref: ImageReference): string {
  return `${ref.registry} ${ref.repository}`
}

export function header (res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name]
  return Array.isArray(v) ? v[0] : v
}

export async function readBody (res: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) {
      res.destroy()
      throw new InvalidArgumentError(`${what}: larger than ${limit} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** A registry's error answer: its `errors[].code` (MANIFEST_UNKNOWN, NAME_UNKNOWN…) named in the message. */
export function registryError (status: number, body: Buffer, what: string): Error {
  let codes = ''
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: string }> }
    codes = (parsed.errors ?? []).map(e => e.code).filter(c => c !== undefined).join(', ')
  } catch {
    // Not the registry's JSON error body (a proxy's page): the status alone says enough.
  }
  const detail = codes === '' ? '' : ` (${codes})`
  if (status === 404) return new NotFoundError(`${what}: not found in the registry${detail}`)
  if (status === 401 || status === 403) return new PermissionDeniedError(`${what}: access denied${detail}`)
  return statusError(status, `${what}${detail}`)
}
