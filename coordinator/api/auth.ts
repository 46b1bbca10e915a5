import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { StaccatoError } from '../../mesh/index.ts'
import { ALL_TENANTS, ROLES } from '../tokens.ts'
import type { Role, TokenStore } from '../tokens.ts'
import { UnauthorizedError } from './errors.ts'

/** Who is calling: set on every authenticated request as `req.principal` (and its tenant as `req.tenant`). */
export interface Principal {
  /** A tenant name, or `*` for an admin of all tenants. */
  tenant: string
  role: Role
  tokenId: string
}

/** A token given in configuration; a plain string is an admin token for all tenants. */
export interface TokenGrant {
  token: string
  tenant: string
  /** Default admin: before roles existed every token could use every route. */
  role?: Role
}

/** Authenticated, but the token's role or tenant does not allow this. */
export class ForbiddenError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('forbidden', message, false, options) }
}

export class RateLimitedError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('rate_limited', message, true, options) }
}

/** The tenant an all-tenants admin's own transfers go to. */
export const DEFAULT_TENANT = 'default'

export function canSee (p: Principal, tenant: string): boolean {
  return p.tenant === ALL_TENANTS || p.tenant === tenant
}

/** For list queries: undefined means every tenant. */
export function tenantFilter (p: Principal): string | undefined {
  return p.tenant === ALL_TENANTS ? undefined : p.tenant
}

/** The tenant new records made by this caller belong to. */
export function ownTenant (p: Principal): string {
  return p.tenant === ALL_TENANTS ? DEFAULT_TENANT : p.tenant
}

export function hasRole (p: Principal, needed: Role): boolean {
  return ROLES.indexOf(p.role) >= ROLES.indexOf(needed)
}

/**
 * Reads the bearer token and finds its principal. An unknown or mistyped
 * token gets one answer, so a caller learns nothing about which tokens exist;
 * the holder of a revoked or expired token is told which (it has the secret).
 */
export function bearerAuthenticator (tokens: TokenStore): (req: FastifyRequest) => Principal {
  return function authenticate (req) {
    const header = req.headers.authorization
    if (header === undefined) throw new UnauthorizedError('missing Authorization: Bearer <token> header')
    const match = /^Bearer +(\S+) *$/i.exec(header)
    if (match === null) throw new UnauthorizedError('the Authorization header must be "Bearer <token>"')
    const token = tokens.authenticate(match[1])
    if (token === undefined) throw new UnauthorizedError(tokens.refusal(match[1]) ?? 'invalid token')
    return { tenant: token.tenant, role: token.role, tokenId: token.id }
  }
}

/** Who presented the metrics token: valid on /metrics only. */
export const SCRAPER: Principal = Object.freeze({ tenant: ALL_TENANTS, role: 'reader', tokenId: 'metrics-token' })

/**
 * Recognises the metrics token (`--metrics-token`) on the routes marked
 * `scrape`. It is compared by sha256 in constant time, like API tokens, and
 * is worth nothing anywhere else: a Prometheus server holds it in a file,
 * and it should not also submit transfers.
 */
export function scrapeAuthenticator (token: string | undefined): (req: FastifyRequest) => Principal | undefined {
  if (token === undefined || token === '') return () => undefined
  const expected = createHash('sha256').update(token).digest()
  return req => {
    if (req.routeOptions.config.scrape !== true) return undefined
    const match = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')
    if (match === null) return undefined
    return timingSafeEqual(createHash('sha256').update(match[1]).digest(), expected) ? SCRAPER : undefined
  }
}

/**
 * Routes say which role they need in `config.role`; a route that says nothing is for admins, so a forgotten one fails closed.
 * A `scrape` route (/metrics) counts every tenant's activity, so it takes the metrics token or an admin token for all tenants.
 */
export function requireRole (req: FastifyRequest, p: Principal): void {
  if (req.routeOptions.config.scrape === true) {
    if (p === SCRAPER || (p.role === 'admin' && p.tenant === ALL_TENANTS)) return
    throw new ForbiddenError(`${req.routeOptions.url ?? req.url.split('?')[0]} shows every tenant's activity: it needs the metrics token or an admin token for all tenants`)
  }
  const needed = req.routeOptions.config.role ?? 'admin'
  if (hasRole(p, needed)) return
  throw new ForbiddenError(`a ${p.role} token may not ${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]} (needs ${needed})`)
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling; null only on public routes. */
    principal: Principal
  }
  interface FastifyContextConfig {
    /** The least role that may call the route; admin when absent. */
    role?: Role
    /** Metrics over all tenants: the metrics token or an all-tenants admin only. */
    scrape?: boolean
  }
}
