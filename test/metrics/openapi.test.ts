import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { tempApi } from '../coordinator/helpers.ts'

type Api = Awaited<ReturnType<typeof tempApi>>

/**
 * The tree of printRoutes({ commonPrefix: false }), each level indented by
 * four characters (`├── /v1/transfers (POST, GET)`, `│   └── /:id (GET)`),
 * as a flat list: ['POST /v1/transfers', 'GET /v1/transfers', 'GET /v1/transfers/:id', …].
 */
function routesOf (printed: string): string[] {
  const routes: string[] = []
  const stack: string[] = []
  for (const line of printed.split('\n')) {
    const m = /^([│ ]*)(?:├── |└── )(\S+) \(([A-Z, ]+)\)$/.exec(line)
    if (m === null) continue
    const depth = m[1].length / 4
    stack.length = depth
    stack.push(m[2])
    for (const method of m[3].split(', ')) routes.push(`${method} ${stack.join('')}`)
  }
  return routes
}

describe('OpenAPI document and docs page', () => {
  let api: Api

  beforeAll(async () => { api = await tempApi() })
  afterAll(async () => { await api?.cleanup() })

  it('serves /openapi.json without a token, with every route of the API in it and the bearer scheme declared', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/openapi.json' })
    expect(res.statusCode).toBe(200)
    const doc = res.json() as {
      openapi: string
      paths: Record<string, Record<string, { security?: unknown[] }>>
      components: { securitySchemes: Record<string, { type: string, scheme: string }> }
      security: Array<Record<string, unknown>>
    }
    expect(doc.openapi).toMatch(/^3\./)
    expect(doc.components.securitySchemes.bearer).toEqual(expect.objectContaining({ type: 'http', scheme: 'bearer' }))
    expect(doc.security).toEqual([{ bearer: [] }])

    const registered = routesOf(api.app.printRoutes({ commonPrefix: false }))
      // HEAD is Fastify's automatic twin of GET; the documentation routes and the dashboard's static files (/ui) are not API.
      .filter(r => !r.startsWith('HEAD ') && !/ \/(docs|openapi\.json|ui)\b/.test(r))
    expect(registered).toEqual(expect.arrayContaining(['POST /v1/transfers', 'GET /v1/transfers/:id', 'POST /v1/transfers/:id/cancel']))
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map(m => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`))
    expect(documented.sort()).toEqual(expect.arrayContaining(registered.sort()))
    // A public route says so; the others inherit the bearer requirement.
    expect(doc.paths['/healthz'].get.security).toEqual([])
    expect(doc.paths['/v1/transfers'].post.security).toBeUndefined()
  })

  it('serves the docs page without a token and loads nothing from another host', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/docs/' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/text\/html/)
    const html = res.body
    for (const m of html.matchAll(/(?:src|href)="([^"]+)"/g)) expect(m[1]).not.toMatch(/^(https?:)?\/\//)
    const initializer = await api.app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' })
    expect(initializer.statusCode).toBe(200)
    const script = await api.app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' })
    expect(script.statusCode).toBe(200)
  })

  it('does not promise contiguous seqs: after a crash the feed skips ahead', async () => {
    const doc = (await api.app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, unknown>> }
    const changes = JSON.stringify(doc.paths['/v1/changes'])
    expect(changes).toMatch(/strictly increasing, not contiguous/)
    expect(changes).not.toMatch(/increases by one/)
  })

  it('still asks for a token everywhere else', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/v1/transfers' })
    expect(res.statusCode).toBe(401)
  })
})
