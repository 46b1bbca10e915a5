import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import { InvalidArgumentError, NetworkError, SourceChangedError, UnsupportedError } from '../mesh/index.ts'
import type { ObjectVersion, ReadOptions, StatResult } from './contract.ts'
import { backoff, networkError, pause, redact, requestWithRetry, statusError } from './http-client.ts'
import type { HttpContext } from './http-client.ts'
import { assertVersion, checkRange } from './util.ts'

function header (res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name]
  return Array.isArray(v) ? v[0] : v
}

export function versionFromHeaders (res: IncomingMessage, size: number): ObjectVersion {
  const lastModified = Date.parse(header(res, 'last-modified') ?? '')
  return { size, mtime: Number.isNaN(lastModified) ? 0 : lastModified, etag: header(res, 'etag') }
}

// `bytes 0-99/1234` → [0, 99, 1234]; `bytes */1234` (an answer to an unsatisfiable range) → [NaN, NaN, 1234].
function contentRange (res: IncomingMessage): [number, number, number] | undefined {
  const m = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+)$/.exec(header(res, 'content-range') ?? '')
  return m == null ? undefined : [Number(m[1] ?? NaN), Number(m[2] ?? NaN), Number(m[3])]
}

/** If-Range needs a strong validator: a strong ETag, else Last-Modified (whole seconds, as the server sent it). */
function ifRangeValidator (v: ObjectVersion): string | undefined {
  if (v.etag !== undefined && !v.etag.startsWith('W/')) return v.etag
  return v.mtime > 0 ? new Date(v.mtime).toUTCString() : undefined
}

export async function statHttp (ctx: HttpContext, url: URL, signal?: AbortSignal): Promise<StatResult> {
  const headers = { 'accept-encoding': 'identity' }
  let res = await requestWithRetry(ctx, url, 'HEAD', headers, signal)
  res.resume()
  if (res.statusCode === 405 || res.statusCode === 501) {
    // Some servers refuse HEAD: a one-byte GET tells the size through Content-Range.
    res = await requestWithRetry(ctx, url, 'GET', { ...headers, range: 'bytes=0-0' }, signal)
    res.destroy()
    const range = contentRange(res)
    if (res.statusCode === 206 && range !== undefined) return versionFromHeaders(res, range[2])
  }
  if (res.statusCode !== 200) throw statusError(res.statusCode ?? 0, `HEAD ${redact(url)}`)
  const length = header(res, 'content-length')
  if (length === undefined) throw new UnsupportedError(`HEAD ${redact(url)}: the server did not send Content-Length`)
  return versionFromHeaders(res, Number(length))
}

/**
 * GET with Range from the current position. Every request after the first
 * carries If-Range with the version seen first (or expected), so a changed
 * object comes back as a 200 and is reported, never spliced. A body broken
 * off mid-way is continued from where it stopped, within the retry budget.
 */
export async function * readHttp (ctx: HttpContext, url: URL, opts: ReadOptions): AsyncGenerator<Uint8Array> {
  const { signal, expect } = opts
  const what = `GET ${redact(url)}`
  checkRange(url, Number.MAX_SAFE_INTEGER, opts)
  if (opts.length === 0 || (expect !== undefined && opts.offset >= expect.size)) {
    // Nothing to fetch; still say whether the range is valid for the object as it is now.
    const st = await statHttp(ctx, url, signal)
    assertVersion(url.href, expect, st)
    checkRange(url, st.size, opts)
    return
  }
  let known = expect
  let position = opts.offset
  let end = opts.length !== undefined ? opts.offset + opts.length : expect?.size
  if (expect !== undefined && end !== undefined) end = Math.min(end, expect.size)
  let failures = 0
  while (end === undefined || position < end) {
    const headers: OutgoingHttpHeaders = { 'accept-encoding': 'identity' }
    const validator = known === undefined ? undefined : ifRangeValidator(known)
    if (position > 0 || opts.length !== undefined) {
      headers.range = `bytes=${position}-${end === undefined ? '' : end - 1}`
      if (validator !== undefined) headers['if-range'] = validator
    } else if (known?.etag !== undefined && !known.etag.startsWith('W/')) {
      headers['if-match'] = known.etag
    }
    const res = await requestWithRetry(ctx, url, 'GET', headers, signal)
    let servedTo: number | undefined
    try {
      const status = res.statusCode ?? 0
      if (status === 416) {
        const total = contentRange(res)?.[2]
        if (total !== undefined && known !== undefined && total !== known.size) throw new SourceChangedError(`${what}: size ${known.size} → ${total}`)
        if (total === position) return
        throw new InvalidArgumentError(`${what}: offset ${position} is past the end of the object${total === undefined ? '' : ` (${total} bytes)`}`)
      }
      if (status === 200) {
        // A whole object, though a Range may have been asked for: another version
        // (If-Range did not match), or a server that ignores Range.
        const length = header(res, 'content-length')
        const found = versionFromHeaders(res, length === undefined ? known?.size ?? NaN : Number(length))
        assertVersion(what, known, found)
        if (position > 0) throw new UnsupportedError(`${what}: the server ignores Range requests, so a read cannot start at offset ${position}`)
        if (length !== undefined) known ??= found
        if (end === undefined && length !== undefined) end = found.size
      } else if (status === 206) {
        const range = contentRange(res)
        if (range === undefined || range[0] !== position) throw new NetworkError(`${what}: asked for bytes from ${position}, got '${header(res, 'content-range')}'`)
        const found = versionFromHeaders(res, range[2])
        assertVersion(what, known, found)
        known ??= found
        end = Math.min(end ?? found.size, found.size)
        servedTo = range[1] + 1
      } else {
        throw statusError(status, what)
      }
      const iterator = res[Symbol.asyncIterator]() as AsyncIterator<Buffer>
      while (end === undefined || position < end) {
        let next: IteratorResult<Buffer>
        try {
          next = await iterator.next()
        } catch (err) {
          const e = networkError(err, what, signal)
          if (signal?.aborted === true || known === undefined || ifRangeValidator(known) === undefined || failures >= ctx.options.retries) throw e
          await pause(backoff(ctx, failures++), signal)
          break
        }
        if (next.done === true) {
          if (end === undefined) return
          // A server may answer a range with fewer bytes than asked for: ask again from where it stopped.
          if (servedTo !== position) {
            if (failures >= ctx.options.retries) throw new NetworkError(`${what}: the body ended at byte ${position} of ${end}`)
            failures++
          }
          break
        }
        let chunk = next.value
        if (end !== undefined && chunk.length > end - position) chunk = chunk.subarray(0, end - position)
        position += chunk.length
        if (chunk.length > 0) yield chunk
      }
    } finally {
      res.destroy()
    }
  }
}
