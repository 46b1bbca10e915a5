import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { InvalidArgumentError } from '../../mesh/index.ts'

/**
 * Standard Webhooks (standardwebhooks.com): a secret is `whsec_` and the
 * base64 of 24 to 64 random bytes; a message is signed with HMAC-SHA256 of
 * `${id}.${timestamp}.${body}` and sent as `webhook-signature: v1,<base64>`.
 */

const PREFIX = 'whsec_'
// The specification's bounds on the decoded key.
const MIN_KEY = 24
const MAX_KEY = 64

export function generateSecret (): string {
  return PREFIX + randomBytes(32).toString('base64')
}

/** Checks a secret a client chose; throws InvalidArgumentError. */
export function checkSecret (secret: string, field = 'secret'): string {
  const key = secretKey(secret)
  if (key === undefined) throw new InvalidArgumentError(`${field}: must be whsec_ and the base64 of ${MIN_KEY} to ${MAX_KEY} bytes`)
  return secret
}

function secretKey (secret: string): Buffer | undefined {
  if (!secret.startsWith(PREFIX)) return undefined
  const b64 = secret.slice(PREFIX.length)
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined
  const key = Buffer.from(b64, 'base64')
  return key.length >= MIN_KEY && key.length <= MAX_KEY ? key : undefined
}

export function sign (secret: string, id: string, timestamp: number, body: string): string {
  const key = secretKey(secret)
  if (key === undefined) throw new TypeError('not a whsec_ secret')
  return 'v1,' + createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')
}

/** The headers of one signed delivery (timestamp in seconds, as the scheme has it). */
export function signedHeaders (secret: string, id: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = Math.floor(now / 1000)
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': sign(secret, id, timestamp, body)
  }
}

/** Checks a `webhook-signature` header (space-separated `v1,<sig>` entries), as a receiver would. */
export function verify (secret: string, id: string, timestamp: number, body: string, header: string): boolean {
  const expected = Buffer.from(sign(secret, id, timestamp, body))
  return header.split(' ').some(sig => {
    const got = Buffer.from(sig)
    return got.length === expected.length && timingSafeEqual(got, expected)
  })
}
