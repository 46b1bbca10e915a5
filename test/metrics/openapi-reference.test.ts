import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { readFile } from 'node:fs/promises'
import { tempApi } from '../coordinator/helpers.ts'

type Api = Awaited<ReturnType<typeof tempApi>>
interface Operation { summary?: string, description?: string, tags?: string[] }

const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

describe('the API reference', () => {
  let api: Api

  beforeAll(async () => { api = await tempApi() })
  afterAll(async () => { await api?.cleanup() })

  it('gives every route a summary, a description and a tag, and the package\'s version', async () => {
    const doc = (await api.app.inject({ method: 'GET', url: '/openapi.json' })).json() as { info: { version: string }, paths: Record<string, Record<string, Operation>> }
    expect(doc.info.version).toBe(version)
    const undocumented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops)
      .filter(([, op]) => !(op.summary !== undefined && op.summary !== '' && op.description !== undefined && op.description !== '' && (op.tags?.length ?? 0) > 0))
      .map(([method]) => `${method.toUpperCase()} ${path}`))
    expect(undocumented).toEqual([])
    expect(Object.keys(doc.paths).length).toBeGreaterThan(15)
    expect(doc.paths['/v1/transfers'].post).toMatchObject({ summary: 'Submit a transfer', tags: ['transfers'] })
  })

  it('answers 405 with Allow for a method a path does not have, and 404 for a path that does not exist', async () => {
    const put = await api.inject({ method: 'PUT', url: '/v1/transfers' })
    expect(put.statusCode).toBe(405)
    expect(put.headers.allow).toBe('GET, HEAD, POST')
    expect(put.json()).toEqual({ code: 'method_not_allowed', message: 'PUT is not allowed on /v1/transfers; it answers GET, HEAD, POST' })
    const patch = await api.inject({ method: 'PATCH', url: '/v1/transfers/tr_x?y=1' })
    expect(patch.statusCode).toBe(405)
    expect(patch.headers.allow).toBe('DELETE, GET, HEAD')
    const missing = await api.inject({ method: 'GET', url: '/v1/nothing-here' })
    expect(missing.statusCode).toBe(404)
  })

  it('sends a browser at / to the dashboard (/ui), and tells a program where things are', async () => {
    const browser = await api.app.inject({ method: 'GET', url: '/', headers: { accept: 'text/html,application/xhtml+xml' } })
    expect(browser.statusCode).toBe(302)
    expect(browser.headers.location).toBe('/ui')
    const program = await api.app.inject({ method: 'GET', url: '/' })
    expect(program.statusCode).toBe(200)
    expect(program.json()).toEqual({ name: 'Staccato coordinator', version, docs: '/docs', openapi: '/openapi.json', ui: '/ui' })
  })
})
