import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import type { IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { isIP } from 'node:net'
import { AddressRefusedError, hostOf } from '../../mesh/index.ts'
import type { AddressPolicy } from '../../mesh/index.ts'

export interface PostOutcome {
  /** The HTTP status, when an answer came. */
  status?: number
  /** From a Retry-After header (seconds or an HTTP date). */
  retryAfterMs?: number
  error?: string
  /** The address was refused by the policy: nothing was sent. */
  refused?: boolean
  ms: number
}

export interface Poster {
  post (url: string, body: string, headers: Record<string, string>, signal?: AbortSignal): Promise<PostOutcome>
  close (): void
}

/**
 * POSTs webhook deliveries. Not fetch(): Node's fetch cannot be given a
 * lookup function without the undici package, and the address policy must
 * see the very address the socket connects to. Connections are pooled in
 * agents of our own, so no socket opened elsewhere without the policy is
 * ever reused for a delivery. Redirects are not followed.
 */
export function createPoster (policy: AddressPolicy, timeoutMs: number, userAgent = 'staccato-webhooks/1'): Poster {
  const agents = {
    'http:': new HttpAgent({ keepAlive: true, maxSockets: 16 }),
    'https:': new HttpsAgent({ keepAlive: true, maxSockets: 16 })
  }
  return {
    async post (text, body, headers, signal) {
      const started = Date.now()
      const done = (o: Omit<PostOutcome, 'ms'>): PostOutcome => ({ ...o, ms: Date.now() - started })
      let url: URL
      try {
        url = new URL(text)
      } catch {
        return done({ error: 'not a URL' })
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return done({ error: `unsupported scheme ${url.protocol}` })
      // A literal address is dialled without a lookup, so it is checked here.
      const host = hostOf(url)
      const why = isIP(host) !== 0 ? policy.refusal(host) : policy.hostRefusal(host)
      if (why !== undefined) return done({ refused: true, error: why })
      const request = url.protocol === 'https:' ? httpsRequest : httpRequest
      return await new Promise<PostOutcome>(resolve => {
        let settled = false
        const finish = (o: Omit<PostOutcome, 'ms'>): void => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          resolve(done(o))
        }
        const req = request(url, {
          method: 'POST',
          agent: agents[url.protocol as 'http:' | 'https:'],
          lookup: policy.lookup as never,
          signal,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'user-agent': userAgent, ...headers }
        }, (res: IncomingMessage) => {
          const status = res.statusCode ?? 0
          const retryAfterMs = parseRetryAfter(res.headers['retry-after'])
          // The answer's body is not used: drain it so the socket can be reused.
          res.resume()
          res.once('end', () => finish({ status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) }))
          res.once('error', err => finish({ status, error: err.message }))
        })
        const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
        req.once('error', err => {
          if (err instanceof AddressRefusedError) finish({ refused: true, error: err.message })
          else finish({ error: err.message })
        })
        req.end(body)
      })
    },
    close () {
      agents['http:'].destroy()
      agents['https:'].destroy()
    }
  }
}

/** Retry-After as milliseconds from now: delta-seconds or an HTTP date. */
export function parseRetryAfter (value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value
  if (text === undefined || text.trim() === '') return undefined
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * 1000
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}
