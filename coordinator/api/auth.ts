import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { UnauthorizedError } from './errors.ts'

export interface Principal {
  tenant: string
}

export interface TokenGrant {
  token: string
  tenant: string
}

const DEFAULT_TENANT = 'default'

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/**
 * Checks bearer tokens. Only their sha256 hashes are kept, and a presented
 * token is compared with every hash in constant time (no early exit), so
 * neither the length nor a prefix of a valid token leaks through timing.
 */
export function bearerAuthenticator (tokens: ReadonlyArray<string | TokenGrant>): (req: FastifyRequest) => Principal {
  const grants = tokens.map(t => {
    const grant = typeof t === 'string' ? { token: t, tenant: DEFAULT_TENANT } : t
    if (grant.token.length === 0) throw new TypeError('an API token must not be empty')
    return { hash: sha256(grant.token), tenant: grant.tenant }
  })

  return function authenticate (req) {
    const header = req.headers.authorization
    if (header === undefined) throw new UnauthorizedError('missing Authorization: Bearer <token> header')
    const match = /^Bearer +(\S+) *$/i.exec(header)
    if (match === null) throw new UnauthorizedError('the Authorization header must be "Bearer <token>"')
    const presented = sha256(match[1])
    let found: Principal | undefined
    for (const grant of grants) {
      if (timingSafeEqual(presented, grant.hash) && found === undefined) found = { tenant: grant.tenant }
    }
    if (found === undefined) throw new UnauthorizedError('invalid token')
    return found
  }
}
