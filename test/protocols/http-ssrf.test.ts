import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { http, https } from '../../protocols/index.ts'
import { collect } from './support.ts'

/**
 * The http(s) plug-ins against real servers on loopback: with the default
 * options no spelling of a local address is reached, a redirect is checked
 * like the first request, and a redirect may not change the scheme.
 */

interface Local { server: Server, port: number, hits: string[] }

async function listen (server: Server, host: string): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, host, resolve))
  return (server.address() as { port: number }).port
}

function handler (hits: string[], answer: (req: IncomingMessage, res: ServerResponse) => void) {
  return (req: IncomingMessage, res: ServerResponse) => {
    hits.push(`${req.method} ${req.url}`)
    answer(req, res)
  }
}

const body = (_req: IncomingMessage, res: ServerResponse): void => {
  res.writeHead(200, { 'content-length': '6', 'last-modified': new Date(0).toUTCString() })
  res.end('secret')
}

async function close (server: Server | undefined): Promise<void> {
  if (server === undefined) return
  server.closeAllConnections()
  await new Promise(resolve => server.close(resolve))
}

describe('http plug-in address policy', () => {
  // Dual-stack on '::' answers 127.0.0.1, ::1, 0.0.0.0 and ::ffff:127.0.0.1 alike, so the old code reached it through each spelling.
  const local: Local = { server: createServer(), port: 0, hits: [] }
  let redirector: Local
  beforeAll(async () => {
    local.server.on('request', handler(local.hits, body))
    local.port = await listen(local.server, '::')
    const hits: string[] = []
    // An allowed server (127.0.0.2) that redirects to the refused one.
    const server = createServer(handler(hits, (req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${local.port}/obj` })
      res.end()
    }))
    redirector = { server, port: await listen(server, '127.0.0.2'), hits }
  })
  afterAll(async () => {
    await close(local.server)
    await close(redirector?.server)
  })

  const spellings = ['127.0.0.1', 'localhost', '[::1]', '0.0.0.0', '2130706433', '[::ffff:127.0.0.1]', '0x7f.1', '127.1']
  for (const host of spellings) {
    it(`refuses http://${host} by default, for stat, read and write, before any request`, async () => {
      const url = new URL(`http://${host}:${local.port}/obj`)
      const plugin = http({ retries: 0 })
      await expect(plugin.stat(url)).rejects.toMatchObject({ code: 'address_refused', retryable: false })
      await expect(collect(plugin.read(url, { offset: 0 }))).rejects.toMatchObject({ code: 'address_refused' })
      const refusedWrite = (async () => {
        const w = await plugin.write(url, { offset: 0, key: 'k' })
        await w.write(Buffer.from('x'))
        await w.commit()
      })()
      await expect(refusedWrite).rejects.toMatchObject({ code: 'address_refused' })
      expect(local.hits).toEqual([])
      await plugin.close?.()
    })
  }

  it('reaches loopback when the operator allows it, by class or by range', async () => {
    for (const allow of [['loopback'], ['127.0.0.0/8', '::1']]) {
      const plugin = http({ allowAddresses: allow })
      expect((await plugin.stat(new URL(`http://localhost:${local.port}/obj`))).size).toBe(6)
      await plugin.close?.()
    }
    local.hits.length = 0
  })

  it('checks the address of every redirect: a 302 from an allowed server to 127.0.0.1 is refused', async () => {
    const plugin = http({ retries: 0, allowAddresses: ['127.0.0.2/32'] })
    const url = new URL(`http://127.0.0.2:${redirector.port}/start`)
    await expect(plugin.stat(url)).rejects.toMatchObject({ code: 'address_refused' })
    await expect(collect(plugin.read(url, { offset: 0 }))).rejects.toMatchObject({ code: 'address_refused' })
    expect(redirector.hits).toEqual(['HEAD /start', 'GET /start'])
    expect(local.hits).toEqual([])
    await plugin.close?.()
  })
})

describe('https plug-in redirects', () => {
  let dir: string
  let tls: Server | undefined
  let plain: Server | undefined
  const hits: string[] = []
  let ca: Buffer
  let tlsPort = 0
  let plainPort = 0
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-ssrf-'))
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'
    ])
    ca = await readFile(join(dir, 'cert.pem'))
    plain = createServer(handler(hits, body))
    plainPort = await listen(plain, '127.0.0.1')
    tls = createTlsServer({ key: await readFile(join(dir, 'key.pem')), cert: ca }, handler(hits, (req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${plainPort}/obj` })
      res.end()
    }))
    tlsPort = await listen(tls, '127.0.0.1')
  })
  afterAll(async () => {
    await close(tls)
    await close(plain)
    await rm(dir, { recursive: true, force: true })
  })

  it('refuses an https → http redirect (a tenant allowed only https never gets a plain-http fetch)', async () => {
    // Loopback is allowed here, so the scheme is the only thing that refuses the hop.
    const plugin = https({ retries: 0, agent: { ca }, allowAddresses: ['loopback'] })
    const url = new URL(`https://127.0.0.1:${tlsPort}/start`)
    await expect(plugin.stat(url)).rejects.toMatchObject({ code: 'permission_denied', message: expect.stringMatching(/https → http/) })
    await expect(collect(plugin.read(url, { offset: 0 }))).rejects.toMatchObject({ code: 'permission_denied' })
    expect(hits).toEqual(['HEAD /start', 'GET /start'])
    await plugin.close?.()
  })
})
