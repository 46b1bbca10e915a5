import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { PACKAGE_VERSION } from '../../mesh/index.ts'
import { ROUTE_DOCS, openApiPath } from './route-docs.ts'
import { UI_PREFIX } from './ui.ts'
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
        // The package's: the REST API's own version is in its paths (/v1).
        version: PACKAGE_VERSION
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'an API token: `Authorization: Bearer <token>`' }
        }
      },
      security: [{ bearer: [] }]
    },
    // Public routes say so in the document: an empty security requirement overrides the global one.
    transform: ({ schema, url, route }) => {
      const doc = [route.method].flat().map(m => ROUTE_DOCS[`${m} ${openApiPath(url)}`]).find(d => d !== undefined)
      // A description written at the route wins over the table's.
      const documented = doc === undefined ? schema : { summary: doc.summary, tags: doc.tags, ...schema, description: schema?.description ?? doc.description }
      return { schema: route.config?.public === true ? { ...documented, security: [] } : documented, url }
    }
  })
  void app.register(async docs => {
    docs.addHook('onRoute', route => {
      route.config = { ...route.config, public: true }
    })
    await docs.register(swaggerUi, { routePrefix: DOCS_PREFIX, staticCSP: true })
    docs.get(OPENAPI_PATH, { schema: { hide: true } }, async () => docs.swagger())
    // A browser opening the API's address lands on the dashboard; a program gets where things are.
    docs.get('/', async (req, reply) => {
      if ((req.headers.accept ?? '').includes('text/html')) return await reply.redirect(UI_PREFIX, 302)
      return { name: 'Staccato coordinator', version: PACKAGE_VERSION, docs: DOCS_PREFIX, openapi: OPENAPI_PATH, ui: UI_PREFIX }
    })
  })
}
