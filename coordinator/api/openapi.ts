import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { ApiInstance } from './types.ts'

export const OPENAPI_PATH = '/openapi.json'
export const DOCS_PREFIX = '/docs'

/**
 * The OpenAPI document, generated from the route schemas, at /openapi.json,
 * and Swagger UI at /docs, both without authentication. Swagger UI's assets
 * come from the @fastify/swagger-ui package itself: the page loads nothing
 * from elsewhere.
 *
 * @fastify/swagger collects routes with an onRoute hook, so it must be loaded
 * before any route is added: buildApi adds its routes in a plugin registered
 * after this one.
 */
export function registerOpenApi (app: ApiInstance): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Staccato coordinator',
        description: 'Submit transfers, follow them, and see the agents of a Staccato mesh.',
        // The REST API's version (its paths start with /v1), not the package's.
        version: '1.0.0'
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'an API token: `Authorization: Bearer <token>`' }
        }
      },
      security: [{ bearer: [] }]
    },
    // Public routes say so in the document: an empty security requirement overrides the global one.
    transform: ({ schema, url, route }) => ({
      schema: route.config?.public === true ? { ...schema, security: [] } : schema,
      url
    })
  })
  void app.register(async docs => {
    docs.addHook('onRoute', route => {
      route.config = { ...route.config, public: true }
    })
    await docs.register(swaggerUi, { routePrefix: DOCS_PREFIX, staticCSP: true })
    docs.get(OPENAPI_PATH, { schema: { hide: true } }, async () => docs.swagger())
  })
}
