import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { http } from '../../protocols/index.ts'
import { collect } from './support.ts'

/**
 * Credentials given to the http plug-in (and the oci plug-in's registry
 * tokens, which ride the same client) are for the origin first asked: a
 * redirect to another origin (a registry sending a blob to its storage host)
 * goes without the Authorization header; one within the origin keeps it.
 */
describe('Authorization across redirects', () => {
  const seen: Array<{ server: string, path: string, authorization?: string }> = []
  let origin: Server
  let storage: Server
  let storagePort = 0
  let originPort = 0

  async function listen (server: Server): Promise<number> {
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    return (server.address() as { port: number }).port
  }

  beforeAll(async () => {
    storage = createServer((req, res) => {
      seen.push({ server: 'storage', path: req.url ?? '', authorization: req.headers.authorization })
      res.writeHead(200, { 'content-length': '4' }).end('blob')
    })
    origin = createServer((req, res) => {
      seen.push({ server: 'origin', path: req.url ?? '', authorization: req.headers.authorization })
      if (req.url === '/away') res.writeHead(302, { location: `http://127.0.0.1:${storagePort}/blob` }).end()
      else if (req.url === '/here') res.writeHead(302, { location: '/blob' }).end()
      else res.writeHead(200, { 'content-length': '4' }).end('blob')
    })
    storagePort = await listen(storage)
    originPort = await listen(origin)
  })

  afterAll(async () => {
    for (const s of [origin, storage]) {
      s.closeAllConnections()
      await new Promise(resolve => s.close(resolve))
    }
  })

  it('drops it on a redirect to another origin, keeps it within the origin', async () => {
    const p = http({ allowAddresses: ['loopback'], headers: { Authorization: 'Bearer registry-token' }, retries: 0 })
    expect((await collect(p.read(new URL(`http://127.0.0.1:${originPort}/away`), { offset: 0 }))).toString()).toBe('blob')
    expect((await collect(p.read(new URL(`http://127.0.0.1:${originPort}/here`), { offset: 0 }))).toString()).toBe('blob')
    await p.close?.()
    expect(seen).toEqual([
      { server: 'origin', path: '/away', authorization: 'Bearer registry-token' },
      { server: 'storage', path: '/blob', authorization: undefined },
      { server: 'origin', path: '/here', authorization: 'Bearer registry-token' },
      { server: 'origin', path: '/blob', authorization: 'Bearer registry-token' }
    ])
  })
})
