import Fastify from 'fastify'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import rateLimit from '@fastify/rate-limit'
import type { TransferRecord } from '../model.ts'
import type { TransferStore } from '../store.ts'
import type { AgentLive } from '../registry.ts'
import { agentRoutes } from './agents.ts'
import { TokenStore } from '../tokens.ts'
import { RateLimitedError, bearerAuthenticator, requireRole, scrapeAuthenticator } from './auth.ts'
import type { Principal, TokenGrant } from './auth.ts'
import type { TenantPolicy } from './policy.ts'
import { tokenRoutes } from './tokens.ts'
import { errorHandler } from './errors.ts'
import { methodAwareNotFound } from './methods.ts'
import { metricsRoute } from '../metrics.ts'
import type { CoordinatorMetrics } from '../metrics.ts'
import { registerOpenApi } from './openapi.ts'
import { guardConnections } from './connections.ts'
import { Health } from './schemas.ts'
import { transferRoutes } from './transfers.ts'
import { imageRoutes } from './images.ts'
import { EventServices } from '../events/index.ts'
import { changesRoutes } from './changes.ts'
import { eventStreamRoutes } from './events-sse.ts'
import { webhookRoutes } from './webhooks.ts'
import { uiRoutes } from './ui.ts'
import { watchRoutes } from './watch.ts'
import { MeshWatch } from '../mesh-watch.ts'
import type { ApiInstance } from './types.ts'
import type { ImageHolders } from '../image-seed.ts'

export { UnauthorizedError, UnknownAgentError } from './errors.ts'
export { ForbiddenError, canSee, hasRole, ownTenant, tenantFilter } from './auth.ts'
export type { Principal, TokenGrant } from './auth.ts'
export { parseTenantPolicy } from './policy.ts'
export type { TenantPolicy, TenantRule } from './policy.ts'
export type { ApiInstance } from './types.ts'

export interface ApiOptions {
  store: TransferStore
  /** Bearer tokens from configuration, kept (hashed) in memory; a plain string is an admin token for all tenants. */
  tokens?: ReadonlyArray<string | TokenGrant>
  /** Tokens created through the API, and join tokens; in memory only when absent. */
  tokenStore?: TokenStore
  /** Which agents, volumes and schemes each tenant may use. */
  tenants?: TenantPolicy
  rateLimit?: RateLimitOptions
  /** Serve HTTPS with this PEM key and certificate (chain). */
  https?: { key: string | Buffer, cert: string | Buffer }
  /** Cap on open client connections. */
  maxConnections?: number
  /** Cap on open connections from one client address (an IPv6 /64); 0 disables it (behind a reverse proxy every client has the proxy's address). */
  maxConnectionsPerAddress?: number
  /** Time allowed to send the request headers (default 15 s), and to send a first byte at all; a connection that has not by then is closed. */
  headersTimeoutMs?: number
  /** Records security-relevant changes (tokens created and revoked); the Fastify logger when absent. */
  audit?: (msg: string, fields: Record<string, unknown>) => void
  logger?: FastifyServerOptions['logger']
  onCancel?: (rec: TransferRecord) => void
  /** Who seeded each image last: an image distribution without ?via= is seeded there when it is online (image-seed.ts). */
  imageHolders?: ImageHolders
  onCancelDestination?: (rec: TransferRecord, destination: string) => Promise<TransferRecord>
  /** An agent was removed (DELETE /v1/agents/:name): close its control connection. */
  onAgentRemoved?: (name: string) => void
  /** A connected agent's last heartbeat and free space (the registry's memory). */
  agentLive?: (name: string) => AgentLive | undefined
  /** Change feed, live stream and webhooks; when absent the API makes its own, opened on ready, without background jobs. */
  events?: EventServices
  /** Serves /metrics and times every request when given. */
  metrics?: CoordinatorMetrics
  /** A bearer token good for /metrics only (Prometheus' credentials_file); an all-tenants admin token works too. */
  metricsToken?: string
  /** Swarm piece maps and throughput series (GET /v1/transfers/:id/swarm, GET /v1/throughput); the API makes an idle one when absent. */
  watch?: MeshWatch
}

export interface RateLimitOptions {
  /** Requests per window for one token. */
  max: number
  /** Requests per window from one address without a valid token (bounds token guessing). */
  unauthenticatedMax: number
  windowMs: number
}

const BODY_LIMIT = 1024 * 1024
/** Time allowed to receive a whole request; bounds slow-loris clients. Answers (long polls) are not limited by it. */
const REQUEST_TIMEOUT_MS = 30_000
const HEADERS_TIMEOUT_MS = 15_000
/** An idle keep-alive connection is closed after this; a request in progress (a long poll, a live stream) is not idle. */
const KEEP_ALIVE_TIMEOUT_MS = 10_000
const MAX_CONNECTIONS = 1024
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 64
/** How often Node looks for connections past the headers or request timeout; its default (30 s) would let a slow client stay up to twice the timeout. */
const TIMEOUT_CHECK_INTERVAL_MS = 1000
/** Generous: a busy dashboard polling a few transfers a second stays far below it. */
export const DEFAULT_RATE_LIMIT: RateLimitOptions = { max: 6000, unauthenticatedMax: 600, windowMs: 60_000 }

/** Builds the REST API without listening: the caller runs `await app.listen({ host, port })`. */
export function buildApi (opts: ApiOptions): FastifyInstance {
  // Fastify types an HTTPS server differently; the routes do not care which one carries them.
  const app: ApiInstance = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: BODY_LIMIT,
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    http: { connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS },
    // A TLS handshake left half done holds its slot like half a header does.
    ...(opts.https !== undefined ? { https: { ...opts.https, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS, handshakeTimeout: opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS } } : {})
  } as FastifyServerOptions).withTypeProvider<TypeBoxTypeProvider>()
  app.server.headersTimeout = opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS
  // Node requires requestTimeout >= headersTimeout.
  app.server.requestTimeout = Math.max(REQUEST_TIMEOUT_MS, app.server.headersTimeout)
  app.server.maxConnections = opts.maxConnections ?? MAX_CONNECTIONS
  guardConnections(app.server, { perAddress: opts.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, firstByteMs: app.server.headersTimeout })

  // TypeBox's compiler converts query strings, params and headers to their
  // types but checks bodies as sent: "5" is not a priority.
  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(methodAwareNotFound(app))

  const tokens = opts.tokenStore ?? TokenStore.memory()
  for (const t of opts.tokens ?? []) {
    if (typeof t === 'string') tokens.addConfigToken(t)
    else tokens.addConfigToken(t.token, { tenant: t.tenant, role: t.role })
  }
  const authenticate = bearerAuthenticator(tokens)
  const scraper = scrapeAuthenticator(opts.metricsToken)
  const limits = opts.rateLimit ?? DEFAULT_RATE_LIMIT
  // Keyed by token once authenticated, else by address: keying on whatever token was sent would give every guess a fresh allowance.
  void app.register(rateLimit, {
    global: false,
    timeWindow: limits.windowMs,
    max: (_req, key) => key.startsWith('ip:') ? limits.unauthenticatedMax : limits.max,
    keyGenerator: req => req.principal !== null ? `token:${req.principal.tokenId}` : `ip:${req.ip}`
  })
  let limiter: ReturnType<ApiInstance['createRateLimit']> | undefined
  app.decorateRequest('tenant', '')
  app.decorateRequest('principal', null as unknown as Principal)
  app.addHook('onRequest', async (req, reply) => {
    if (req.routeOptions.config.public === true) return
    let refused: unknown
    try {
      req.principal = scraper(req) ?? authenticate(req)
      req.tenant = req.principal.tenant
    } catch (err) {
      refused = err
    }
    // Counted before a bad token is refused, so that guessing tokens is rate limited too.
    limiter ??= app.createRateLimit()
    const verdict = await limiter(req)
    if (!verdict.isAllowed && verdict.isExceeded) {
      void reply.header('retry-after', String(verdict.ttlInSeconds))
      throw new RateLimitedError(`too many requests: at most ${verdict.max} per ${Math.round(verdict.timeWindow / 1000)} s; retry in ${verdict.ttlInSeconds} s`)
    }
    if (refused !== undefined) throw refused
    // An unknown route answers 404 to any valid token.
    if (!req.is404) requireRole(req, req.principal)
  })
  if (opts.metrics !== undefined) app.addHook('onResponse', opts.metrics.onResponse)
  registerOpenApi(app)

  // Routes are added inside a plugin so that the OpenAPI plugin, registered
  // above, has loaded and sees each of them: add new routes in here too.
  void app.register(async app => {
    app.get('/healthz', {
      config: { public: true },
      schema: { response: { 200: Health } }
    }, async () => ({ ok: true }))

    transferRoutes(app, opts)
    imageRoutes(app, opts)
    const watch = opts.watch ?? new MeshWatch(opts.store)
    agentRoutes(app, { ...opts, agentRate: name => watch.throughput.rate(name) })
    tokenRoutes(app, { tokens, audit: opts.audit })
    if (opts.metrics !== undefined) metricsRoute(app, opts.metrics)
    const events = opts.events ?? ownEvents(app, opts.store)
    changesRoutes(app, { store: opts.store, events })
    eventStreamRoutes(app, { store: opts.store, events })
    webhookRoutes(app, { events })
    watchRoutes(app, { store: opts.store, watch })
    uiRoutes(app)
  })
  return app
}

function ownEvents (app: ApiInstance, store: TransferStore): EventServices {
  const events = new EventServices(store)
  app.addHook('onReady', async () => { await events.open() })
  app.addHook('onClose', async () => { await events.close() })
  return events
}
