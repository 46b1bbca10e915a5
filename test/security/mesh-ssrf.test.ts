import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { readdir } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestMesh } from '../helpers/mesh.ts'

/**
 * SSRF through the whole system: a client asks an agent with the default
 * configuration to fetch from the agent's own loopback. The transfer must
 * fail with address_refused, the local service must see no request, and
 * nothing may land in the volume; an agent the operator allowed loopback
 * fetches the same URL (the control).
 */
describe('http sources that point at the agent\'s own host', () => {
  let mesh: TestMesh
  let server: Server
  let port = 0
  const hits: string[] = []

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits.push(`${req.method} ${req.url}`)
      res.writeHead(200, { 'content-length': '6', 'last-modified': new Date(0).toUTCString() })
      res.end(req.method === 'HEAD' ? undefined : 'secret')
    })
    await new Promise<void>(resolve => server.listen(0, '::', resolve))
    port = (server.address() as { port: number }).port
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('plain')
    await mesh.startAgent('trusted', ['--allow-address', 'loopback'])
  })
  afterAll(async () => {
    await mesh?.stop()
    server?.closeAllConnections()
    await new Promise(resolve => server?.close(resolve))
  })

  it('refuses loopback in every spelling on an agent with the default configuration', async () => {
    for (const host of ['127.0.0.1', 'localhost', '[::1]', '0.0.0.0', '2130706433', '[::ffff:127.0.0.1]']) {
      const t = await mesh.submit(`http://${host}:${port}/secret.txt`, `agent://plain/vol/${encodeURIComponent(host)}.txt`)
      const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
      expect(done.state, host).toBe('failed')
      expect(done.lastError?.code, host).toBe('address_refused')
      expect(done.attempt, `${host}: refused for good, not retried`).toBe(1)
    }
    expect(hits).toEqual([])
    expect(await readdir(mesh.volume('plain'))).toEqual([])
  })

  it('fetches from loopback on an agent allowed to reach it', async () => {
    const t = await mesh.submit(`http://localhost:${port}/secret.txt`, 'agent://trusted/vol/secret.txt')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state, JSON.stringify(done.lastError)).toBe('succeeded')
    expect(hits.length).toBeGreaterThan(0)
  })
})
