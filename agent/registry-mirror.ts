import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { InvalidArgumentError, NetworkError, toStaccatoError } from '../mesh/index.ts'
import type { OciPlugin } from '../protocols/index.ts'
import type { Arrival } from './arriving-blobs.ts'
import type { BlobIndex, BlobReader } from './blob-index.ts'
import { countBytes } from './counters.ts'
import type { AgentCounters } from './counters.ts'
import { mirrorAllowed, parseMirrorPath, parseRange, upstreamOf } from './mirror-policy.ts'

export interface RegistryMirrorOptions {
  /** host:port, or a port alone (then on 127.0.0.1). */
  listen: string
  /** Images it may mirror: `registry/repository`, `registry/prefix/*` (mirror-policy.ts). */
  images: readonly string[]
  oci: OciPlugin
  blobs: BlobIndex
  counters: AgentCounters
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** Asks the coordinator to bring this agent into a distribution of the image (oci://…@sha256:<manifest>). */
  want?: (image: string) => Promise<{ distributionId?: string, self?: boolean }>
  /** Whether this agent takes part in that distribution now (its swarm session is open). */
  inDistribution?: (id: string) => boolean
}

/** Blob digests remembered with the image (manifest) that named them, so that a blob request can name its image; bounded. */
const KNOWN_BLOBS = 10_000
/** How often the mirror looks for a wanted blob in its blob index. */
const WANT_POLL_MS = 100
/** A distribution the agent has not joined by then is not coming: the blob is read from the registry. */
const JOIN_WAIT_MS = 60_000
/** The longest a client waits for a distribution; past it the blob is read from the registry. */
const WANT_WAIT_MS = 30 * 60_000
/** The most of an arriving blob read in one go: a piece's worth at the coordinator's default piece size. */
const ARRIVING_READ = 4 * 1024 * 1024

export interface RegistryMirror {
  readonly port: number
  close(): Promise<void>
}

/** What the registry API calls its errors (distribution spec, "Error Codes"), by our codes. */
const REGISTRY_CODES: Record<string, { status: number, code: string }> = {
  not_found: { status: 404, code: 'NAME_UNKNOWN' },
  permission_denied: { status: 403, code: 'DENIED' },
  invalid_argument: { status: 400, code: 'UNSUPPORTED' },
  checksum_mismatch: { status: 502, code: 'BLOB_UNKNOWN' }
}

export function parseListen (listen: string): { host: string, port: number } {
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(listen)
  const port = Number(m?.[2])
  if (m === null || port > 65535) throw new InvalidArgumentError(`registry mirror: '${listen}' is not host:port`)
  return { host: (m[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1'), port }
}

/**
 * The agent as a pull-through registry mirror (the Kraken agent's and
 * Spegel's role): the read side of the registry API for the images it may
 * mirror. Blobs come from what the agent holds (any layout, its blob store);
 * a blob it lacks is read from the registry once, streamed to the client
 * while it arrives and kept, visible to later pulls only once its bytes
 * matched its digest (a mismatch cuts the client's response short, so the
 * client never accepts it either). Manifests are asked of the registry each
 * time: a tag moves.
 */
export async function startRegistryMirror (o: RegistryMirrorOptions): Promise<RegistryMirror> {
  const { host, port } = parseListen(o.listen)
  /** Blobs being fetched from the registry: a second client waits for the first fetch instead of reading the registry again. */
  const fetching = new Map<string, Promise<void>>()
  /** blob digest → the image (by manifest digest) a client was served a manifest of. */
  const imageOf = new Map<string, string>()

  const remember = (registry: string, name: string, digest: string, bytes: Buffer): void => {
    let parsed: { config?: { digest?: unknown }, layers?: Array<{ digest?: unknown }> }
    try {
      parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed
    } catch {
      return
    }
    if (imageOf.size > KNOWN_BLOBS) imageOf.clear()
    for (const d of [parsed.config?.digest, ...(parsed.layers ?? []).map(l => l.digest)]) {
      if (typeof d === 'string') imageOf.set(d, `oci://${registry}/${name}@${digest}`)
    }
  }

  /**
   * A blob this agent lacks, of an image a client is pulling: joins the
   * distribution the coordinator makes of it (shared with the other hosts
   * pulling it now) and waits for the blob to be committed here. Undefined
   * when it does not come that way: the registry is read then.
   */
  const viaSwarm = async (digest: string, closed: AbortSignal): Promise<BlobReader | undefined> => {
    const image = imageOf.get(digest)
    if (image === undefined || o.want === undefined) return undefined
    const answer = await o.want(image).catch((err: unknown) => {
      o.log('registry mirror could not ask for a distribution; reading the registry', { image, error: toStaccatoError(err).message })
      return undefined
    })
    const id = answer?.distributionId
    if (id === undefined) return undefined
    const start = Date.now()
    let joined = false
    while (!closed.aborted && Date.now() - start < WANT_WAIT_MS) {
      const held = await o.blobs.find(digest)
      if (held !== undefined) return held
      // Its first verified pieces have landed here: served as they come, not after the whole image commits.
      const arriving = o.blobs.arriving.get(digest)
      if (arriving !== undefined) return arrivingReader(arriving, o.blobs, o.counters, closed)
      const inside = o.inDistribution?.(id) ?? false
      // Joined and left again without the blob (the distribution failed), or never joined: not coming.
      if ((joined && !inside) || (!joined && !inside && Date.now() - start > JOIN_WAIT_MS)) break
      joined ||= inside
      await sleep(WANT_POLL_MS)
    }
    return await o.blobs.find(digest)
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    res.setHeader('docker-distribution-api-version', 'registry/2.0')
    if (req.method !== 'GET' && req.method !== 'HEAD') return registryError(res, 405, 'UNSUPPORTED', 'this mirror serves pulls only')
    const url = new URL(req.url ?? '/', 'http://mirror')
    const r = parseMirrorPath(url.pathname)
    if (r === undefined) return registryError(res, 404, 'NAME_INVALID', `${url.pathname} is not a registry API path this mirror serves`)
    if (r.kind === 'base') return send(res, req, 200, 'application/json', Buffer.from('{}'))
    const registry = upstreamOf(o.images, url.searchParams.get('ns'))
    if (registry === undefined || !mirrorAllowed(o.images, registry, r.name)) {
      return registryError(res, 403, 'DENIED', `${registry ?? '?'}/${r.name} is not an image this agent mirrors`)
    }
    if (r.kind === 'manifest') {
      const m = await o.oci.manifest(new URL(`oci://${registry}/${r.name}${r.reference.startsWith('sha256:') ? '@' : ':'}${r.reference}`))
      res.setHeader('docker-content-digest', m.digest)
      remember(registry, r.name, m.digest, m.bytes)
      return send(res, req, 200, m.mediaType, m.bytes)
    }
    let held = await o.blobs.find(r.digest)
    const from = new URL(`oci://${registry}/${r.name}@${r.digest}`)
    if (held === undefined && fetching.has(r.digest)) {
      await fetching.get(r.digest)?.catch(() => {})
      held = await o.blobs.find(r.digest)
    }
    if (held === undefined) {
      // A distribution's seed may be reading it into the store right now.
      await o.blobs.settled(r.digest)
      held = await o.blobs.find(r.digest)
    }
    const closed = new AbortController()
    res.once('close', () => { closed.abort() })
    if (held === undefined) {
      // A distribution (a preheat, another host's pull) is writing it here now: its verified pieces are served as they land, Range included.
      const arriving = o.blobs.arriving.get(r.digest)
      if (arriving !== undefined) held = arrivingReader(arriving, o.blobs, o.counters, closed.signal)
    }
    if (held === undefined && req.method === 'GET' && req.headers.range === undefined && !fetching.has(r.digest)) {
      held = await viaSwarm(r.digest, closed.signal)
      if (closed.signal.aborted) return
    }
    if (held !== undefined) return await sendBlob(res, req, r.digest, held, o.counters)
    const st = await o.oci.stat(from)
    const range = parseRange(req.headers.range, st.size)
    res.setHeader('docker-content-digest', r.digest)
    res.setHeader('accept-ranges', 'bytes')
    if (req.method === 'HEAD' || range !== undefined || fetching.has(r.digest)) {
      // A part of a blob we lack (or one another client is fetching): read through, nothing kept.
      if (range === 'unsatisfiable') return rangeRefused(res, st.size)
      const start = range?.start ?? 0
      const end = range?.end ?? st.size - 1
      res.writeHead(range !== undefined ? 206 : 200, {
        'content-type': 'application/octet-stream',
        'content-length': end - start + 1,
        ...(range !== undefined ? { 'content-range': `bytes ${start}-${end}/${st.size}` } : {})
      })
      if (req.method === 'HEAD') return void res.end()
      await pipeChunks(res, o.oci.read(from, { offset: start, length: end - start + 1 }), n => { countBytes(o.counters.bytesIn, 'oci', n) })
      return void res.end()
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size })
    const fetch = o.blobs.put(r.digest, st.size, o.oci.read(from, { offset: 0 }), async chunk => {
      countBytes(o.counters.bytesIn, 'oci', chunk.byteLength)
      await write(res, chunk)
    }, { sourceChecksDigest: true })
    fetching.set(r.digest, fetch)
    try {
      await fetch
    } finally {
      fetching.delete(r.digest)
    }
    res.end()
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = toStaccatoError(err)
      if (res.headersSent) {
        // Mid-body: cutting the response short is the only way left to tell the client these bytes are not the blob.
        o.log('registry mirror cut a response short', { path: req.url, error: e.message }, 'warn')
        res.destroy(e)
        return
      }
      const mapped = REGISTRY_CODES[e.code] ?? { status: 502, code: 'UNAVAILABLE' }
      registryError(res, mapped.status, mapped.code, e.message)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  o.log('registry mirror listening', { address: `${host}:${(server.address() as AddressInfo).port}`, images: o.images })
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

async function sendBlob (res: ServerResponse, req: IncomingMessage, digest: string, held: BlobReader, counters: AgentCounters): Promise<void> {
  const range = parseRange(req.headers.range, held.size)
  res.setHeader('docker-content-digest', digest)
  res.setHeader('accept-ranges', 'bytes')
  if (range === 'unsatisfiable') return rangeRefused(res, held.size)
  const start = range?.start ?? 0
  const end = range?.end ?? held.size - 1
  res.writeHead(range !== undefined ? 206 : 200, {
    'content-type': 'application/octet-stream',
    'content-length': end - start + 1,
    ...(range !== undefined ? { 'content-range': `bytes ${start}-${end}/${held.size}` } : {})
  })
  // Each chunk is handed to the kernel before the next is asked for, so the reader may reuse its buffers.
  if (req.method === 'GET') await pipeChunks(res, held.read(start, end - start + 1, { reuseBuffers: true }), n => { counters.mirrorBytesServed += n }, true)
  res.end()
}

/** A blob arriving through a distribution: its verified bytes as they land, then (once committed) from where the blob index finds it. */
function arrivingReader (a: Arrival, blobs: BlobIndex, counters: AgentCounters, signal: AbortSignal): BlobReader {
  return { place: 'arriving', size: a.size, read: (offset, length, opts) => readArriving(a, blobs, offset, length, counters, signal, opts?.reuseBuffers) }
}

async function * readArriving (a: Arrival, blobs: BlobIndex, offset: number, length: number, counters: AgentCounters, signal: AbortSignal, reuseBuffers?: boolean): AsyncIterable<Uint8Array> {
  const end = offset + length
  let at = offset
  // Bounded: every round moves `at` on by at least a byte, or ends (committed, failed, the client gone).
  while (at < end) {
    const chunk = await a.next(at, Math.min(end - at, ARRIVING_READ), signal)
    if (chunk === undefined) {
      const held = await blobs.find(a.digest, a.size)
      if (held === undefined) throw new NetworkError(`${a.digest}: committed, but no longer where it was written`)
      yield * held.read(at, end - at, { reuseBuffers })
      return
    }
    yield chunk
    counters.mirrorBytesServedArriving += chunk.byteLength
    at += chunk.byteLength
  }
}

/** With `flushed`, each chunk has left the process before the next is taken (its buffer may be read into again). */
async function pipeChunks (res: ServerResponse, chunks: AsyncIterable<Uint8Array>, counted?: (n: number) => void, flushed = false): Promise<void> {
  for await (const chunk of chunks) {
    counted?.(chunk.byteLength)
    await (flushed ? writeFlushed(res, chunk) : write(res, chunk))
  }
}

/** Writes and waits until the socket took the bytes (the write's callback), or the client went away. */
async function writeFlushed (res: ServerResponse, chunk: Uint8Array): Promise<void> {
  if (res.destroyed) throw new InvalidArgumentError('the client went away')
  await new Promise<void>((resolve, reject) => {
    const closed = (): void => { reject(new InvalidArgumentError('the client went away')) }
    res.once('close', closed)
    res.write(chunk, err => {
      res.off('close', closed)
      if (err !== undefined && err !== null) reject(new InvalidArgumentError('the client went away', { cause: err }))
      else resolve()
    })
  })
}

/** Writes with back-pressure: a slow client slows the read, rather than the agent buffering the blob. */
async function write (res: ServerResponse, chunk: Uint8Array): Promise<void> {
  if (res.destroyed) throw new InvalidArgumentError('the client went away')
  if (res.write(chunk)) return
  await new Promise<void>((resolve, reject) => {
    const done = (): void => { res.off('drain', done); res.off('close', closed); resolve() }
    const closed = (): void => { res.off('drain', done); reject(new InvalidArgumentError('the client went away')) }
    res.once('drain', done)
    res.once('close', closed)
  })
}

function send (res: ServerResponse, req: IncomingMessage, status: number, type: string, body: Buffer): void {
  res.writeHead(status, { 'content-type': type, 'content-length': body.length })
  res.end(req.method === 'HEAD' ? undefined : body)
}

function rangeRefused (res: ServerResponse, size: number): void {
  res.writeHead(416, { 'content-range': `bytes */${size}` })
  res.end()
}

function registryError (res: ServerResponse, status: number, code: string, message: string): void {
  const body = Buffer.from(JSON.stringify({ errors: [{ code, message }] }))
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length })
  res.end(body)
}
