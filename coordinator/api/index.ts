import Fastify from 'fastify'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { TransferRecord } from '../model.ts'
import type { TransferStore } from '../store.ts'
import { agentRoutes } from './agents.ts'
import { bearerAuthenticator } from './auth.ts'
import type { TokenGrant } from './auth.ts'
import { errorHandler, notFoundHandler } from './errors.ts'
import { Health } from './schemas.ts'
import { transferRoutes } from './transfers.ts'
import type { ApiInstance } from './types.ts'

export { UnauthorizedError, UnknownAgentError } from './errors.ts'
export type { Principal, TokenGrant } from './auth.ts'
export type { ApiInstance } from './types.ts'

export interface ApiOptions {
  store: TransferStore
  /** Accepted bearer tokens; a plain string belongs to tenant `default`. */
  tokens: ReadonlyArray<string | TokenGrant>
  logger?: FastifyServerOptions['logger']
  onCancel?: (rec: TransferRecord) => void
}

const BODY_LIMIT = 1024 * 1024
/** Time allowed to receive a whole request; bounds slow-loris clients. Answers (long polls) are not limited by it. */
const REQUEST_TIMEOUT_MS = 30_000

/** Builds the REST API without listening: the caller runs `await app.listen({ host, port })`. */
export function buildApi (opts: ApiOptions): FastifyInstance {
  const app: ApiInstance = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: BODY_LIMIT,
    requestTimeout: REQUEST_TIMEOUT_MS
  }).withTypeProvider<TypeBoxTypeProvider>()

  // TypeBox's compiler converts query strings, params and headers to their
  // types but checks bodies as sent: "5" is not a priority.
  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)

  const authenticate = bearerAuthenticator(opts.tokens)
  app.decorateRequest('tenant', '')
  app.addHook('onRequest', async (req) => {
    if (req.routeOptions.config.public === true) return
    req.tenant = authenticate(req).tenant
  })

  app.get('/healthz', {
    config: { public: true },
    schema: { response: { 200: Health } }
  }, async () => ({ ok: true }))

  transferRoutes(app, opts)
  agentRoutes(app, opts)
  return app
}
