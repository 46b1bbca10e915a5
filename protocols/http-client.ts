import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { AgentOptions } from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  AddressPolicy, AddressRefusedError, InvalidArgumentError, NetworkError, NoSpaceError, NotFoundError, PermissionDeniedError,
  SourceChangedError, StaccatoError, TimeoutError, UnsupportedError, hostOf
} from '../mesh/index.ts'

/**
 * A small HTTP client on node:http: the plug-in needs a PUT whose body is fed
 * chunk by chunk with back-pressure, and full control over Range/If-Range and
 * redirects. The retry loop is our own because it must honour Retry-After
 * and never retry a request whose body was already consumed.
 */

export interface HttpOptions {
  /** Further attempts after a 5xx, 408, 429 or network failure of a GET/HEAD (and after a read broken mid-body). Default 4. */
  retries?: number
  /** First back-off delay in ms when the server gives no Retry-After; doubles each attempt. Default 250. */
  retryDelay?: number
  /** Longest wait in ms before a retry; a Retry-After longer than this fails the operation (retryable) instead. Default 30 000. */
  maxRetryDelay?: number
  /** Socket idle timeout in ms. Default 60 000. */
  timeout?: number
  /** Sent with every request (e.g. Authorization). */
  headers?: Record<string, string>
  /** Options for the keep-alive agents (TLS: ca, rejectUnauthorized…). */
  agent?: AgentOptions
  /**
   * Address classes (loopback, link-local, metadata, private), addresses or
   * CIDR ranges (`127.0.0.0/8`) this plug-in may connect to although they are
   * refused by default. A URL is chosen by a client, so by default only
   * public addresses are reached, checked on every hop after DNS resolution.
   */
  allowAddresses?: string[]
}

export interface HttpContext {
  options: Required<Omit<HttpOptions, 'agent' | 'headers' | 'allowAddresses'>> & { headers: Record<string, string> }
  agents: { http: HttpAgent, https: HttpsAgent }
  policy: AddressPolicy
}

export function createContext (opts: HttpOptions = {}): HttpContext {
  return {
    options: {
      retries: opts.retries ?? 4,
      retryDelay: opts.retryDelay ?? 250,
      maxRetryDelay: opts.maxRetryDelay ?? 30_000,
      timeout: opts.timeout ?? 60_000,
      headers: opts.headers ?? {}
    },
    agents: {
      http: new HttpAgent({ keepAlive: true, ...opts.agent }),
      https: new HttpsAgent({ keepAlive: true, ...opts.agent })
    },
    policy: new AddressPolicy(opts.allowAddresses ?? [])
  }
}

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504])
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308])
const MAX_REDIRECTS = 5

/**
 * Starts a request; the caller writes the body (if any) and ends it.
 * `withoutAuthorization` drops any Authorization header (a redirect that left the first origin).
 */
export function startRequest (ctx: HttpContext, url: URL, method: string, headers: OutgoingHttpHeaders, signal?: AbortSignal, withoutAuthorization = false): ClientRequest {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`${url.href}: not an http(s) URL`)
  // A literal address is dialled without a lookup, so the policy's lookup never sees it: check it here.
  const refused = ctx.policy.hostRefusal(hostOf(url))
  if (refused !== undefined) throw new AddressRefusedError(`${method} ${redact(url)}: ${refused}`)
  const secure = url.protocol === 'https:'
  const auth = url.username !== '' ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` : undefined
  const all: OutgoingHttpHeaders = { ...ctx.options.headers, ...headers }
  if (withoutAuthorization) for (const name of Object.keys(all)) if (name.toLowerCase() === 'authorization') delete all[name]
  const req = (secure ? httpsRequest : httpRequest)(url, {
    method,
    auth,
    agent: secure ? ctx.agents.https : ctx.agents.http,
    lookup: ctx.policy.lookup as never,
    headers: all,
    signal
  })
  // Failures reach callers through responseOf() or a write callback; a late second 'error' must not crash the process.
  req.on('error', () => {})
  req.setTimeout(ctx.options.timeout, () => {
    req.destroy(new TimeoutError(`${method} ${redact(url)}: no activity for ${ctx.options.timeout} ms`))
  })
  return req
}

export function responseOf (req: ClientRequest): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    req.once('response', resolve)
    req.once('error', reject)
  })
}

/** The URL without credentials, for messages. */
export function redact (url: URL): string {
  if (url.username === '' && url.password === '') return url.href
  const copy = new URL(url.href)
  copy.username = ''
  copy.password = ''
  return copy.href
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date. */
export function retryAfterMs (value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

export function statusError (status: number, what: string): StaccatoError {
  const text = `${what}: HTTP ${status}`
  if (status === 404 || status === 410) return new NotFoundError(`${text} (not found)`)
  if (status === 401 || status === 403) return new PermissionDeniedError(`${text} (permission denied)`)
  // WebDAV answers 409 to a PUT whose parent collection is missing.
  if (status === 409) return new NotFoundError(`${text} (conflict: parent collection missing?)`)
  if (status === 412) return new SourceChangedError(`${text} (precondition failed: the object changed)`)
  if (status === 413 || status === 507) return new NoSpaceError(`${text} (the server has no room for the object)`)
  if (status === 405 || status === 501) return new UnsupportedError(`${text} (method not supported by the server)`)
  if (RETRYABLE_STATUS.has(status) || status >= 500) return new NetworkError(`${text} (server error)`)
  return new InvalidArgumentError(`${text} (request refused)`)
}

export function networkError (err: unknown, what: string, signal?: AbortSignal): Error {
  if (signal?.aborted === true) return signal.reason as Error
  if (err instanceof StaccatoError) return err
  const e = err as NodeJS.ErrnoException | undefined
  const message = `${what}: ${e?.message ?? String(err)}`
  if (e?.code === 'ETIMEDOUT') return new TimeoutError(message, { cause: err })
  return new NetworkError(message, { cause: err })
}

export function backoff (ctx: HttpContext, attempt: number): number {
  const base = ctx.options.retryDelay * 2 ** attempt
  return Math.min(ctx.options.maxRetryDelay, base / 2 + Math.random() * base / 2)
}

export async function pause (ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal })
}

/**
 * Where a redirect leads, refused when it leaves the scheme first asked for.
 * The plug-in knows nothing of tenants, but the coordinator let this tenant
 * use the first URL's scheme: following https → http would hand a tenant
 * allowed only https a plain-http request (and an unencrypted body), and
 * http → https would hand one allowed only http the https plug-in's reach.
 * The address of the new location is checked like the first (startRequest).
 */
function redirectTarget (first: URL, current: URL, location: string): URL {
  let next: URL
  try {
    next = new URL(location, current)
  } catch {
    throw new NetworkError(`${redact(current)}: redirect to an invalid location`)
  }
  if (next.protocol !== first.protocol) {
    throw new PermissionDeniedError(`${redact(current)} redirects to ${redact(next)}: a redirect may not change the scheme (${first.protocol.slice(0, -1)} → ${next.protocol.slice(0, -1)}); ask for the final URL instead`)
  }
  return next
}

/**
 * A body-less request (GET, HEAD) with redirects and retries; a redirect to
 * another origin goes there without the Authorization header. Answers other
 * than retryable ones come back to the caller, which decides what they mean;
 * the body of each discarded answer is drained so its socket can be reused.
 */
export async function requestWithRetry (ctx: HttpContext, url: URL, method: 'GET' | 'HEAD', headers: OutgoingHttpHeaders, signal?: AbortSignal): Promise<IncomingMessage> {
  let target = url
  let redirects = 0
  for (let attempt = 0; ; attempt++) {
    const what = `${method} ${redact(target)}`
    let res: IncomingMessage
    try {
      // Credentials are for the origin first asked (as curl and the fetch standard do): a registry
      // that redirects a blob to its storage must not hand that host the registry's token.
      const req = startRequest(ctx, target, method, headers, signal, target.origin !== url.origin)
      req.end()
      res = await responseOf(req)
    } catch (err) {
      const e = networkError(err, what, signal)
      if (signal?.aborted === true || attempt >= ctx.options.retries || (e instanceof StaccatoError && !e.retryable)) throw e
      await pause(backoff(ctx, attempt), signal)
      continue
    }
    const status = res.statusCode ?? 0
    const location = res.headers.location
    if (REDIRECT_STATUS.has(status) && location !== undefined && redirects < MAX_REDIRECTS) {
      res.resume()
      target = redirectTarget(url, target, location)
      redirects++
      attempt--
      continue
    }
    if (!RETRYABLE_STATUS.has(status)) return res
    res.resume()
    if (attempt >= ctx.options.retries) throw statusError(status, `${what} (after ${attempt + 1} attempts)`)
    const asked = retryAfterMs(res.headers['retry-after'])
    if (asked !== undefined && asked > ctx.options.maxRetryDelay) {
      throw new NetworkError(`${what}: HTTP ${status}, server asks to retry after ${Math.ceil(asked / 1000)} s`)
    }
    await pause(asked ?? backoff(ctx, attempt), signal)
  }
}
