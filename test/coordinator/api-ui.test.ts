import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createHash } from 'node:crypto'
import { tempApi } from './helpers.ts'

type Api = Awaited<ReturnType<typeof tempApi>>

describe('the dashboard\'s assets at /ui', () => {
  let api: Api

  beforeAll(async () => { api = await tempApi() })
  afterAll(async () => { await api?.cleanup() })

  it('serves the page without a token, with a CSP that allows only its own files and its one inline import map', async () => {
    const page = await api.app.inject({ method: 'GET', url: '/ui' })
    expect(page.statusCode).toBe(200)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    const csp = String(page.headers['content-security-policy'])
    expect(csp).toContain("default-src 'none'")
    expect(csp).toContain("connect-src 'self'")
    const map = /<script type="importmap">(.*?)<\/script>/.exec(page.body)?.[1]
    expect(map).toBeDefined()
    const hash = createHash('sha256').update(map as string).digest('base64')
    expect(csp).toContain(`script-src 'self' 'sha256-${hash}'`)
    expect(page.body.match(/<script(?! type="module" src=)(?! type="importmap")/g)).toBeNull()
    expect((await api.app.inject({ method: 'GET', url: '/ui/' })).body).toBe(page.body)
  })

  it('serves the vendored libraries from node_modules and answers 304 to a matching etag', async () => {
    const preact = await api.app.inject({ method: 'GET', url: '/ui/vendor/preact.mjs' })
    expect(preact.statusCode).toBe(200)
    expect(preact.headers['content-type']).toBe('text/javascript; charset=utf-8')
    const again = await api.app.inject({ method: 'GET', url: '/ui/vendor/preact.mjs', headers: { 'if-none-match': String(preact.headers.etag) } })
    expect(again.statusCode).toBe(304)
    for (const url of ['/ui/vendor/hooks.mjs', '/ui/vendor/htm.mjs', '/ui/vendor/uplot.mjs', '/ui/vendor/uplot.css', '/ui/app.js', '/ui/style.css']) {
      expect((await api.app.inject({ method: 'GET', url })).statusCode, url).toBe(200)
    }
  })

  it('serves only the files it loaded: no path reaches the file system', async () => {
    for (const url of ['/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/vendor/../../package.json', '/ui/nothing.js', '/ui/node_modules/preact/package.json']) {
      const res = await api.app.inject({ method: 'GET', url })
      // A path that normalises out of /ui is another route, and unauthenticated there.
      expect([401, 404], url).toContain(res.statusCode)
      expect(res.body).not.toContain('"staccato"')
    }
  })
})
