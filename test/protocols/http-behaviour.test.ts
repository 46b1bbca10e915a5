import { createServer } from 'node:http'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  NetworkError, NotFoundError, PermissionDeniedError, SourceChangedError, UnsupportedError
} from '../../mesh/index.ts'
import { http } from '../../protocols/index.ts'
import { retryAfterMs } from '../../protocols/http-client.ts'
import { httpServers } from '../helpers/http-servers.ts'
import type { HttpServer } from '../helpers/http-servers.ts'
import { MiB, collect, filesUnder, sha256, sourceBytes } from './support.ts'

// The servers here listen on loopback, which the plug-in refuses unless told otherwise.
const LOCAL = { allowAddresses: ['127.0.0.0/8'] }

interface Seen { method: string, url: string, headers: IncomingHttpHeaders, at: number }

/** A tiny scripted server for what nginx will not do on demand (503 then 200, a dropped body…). */
async function scripted (handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<{ url: string, seen: Seen[], close: () => Promise<void> }> {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, at: performance.now() })
    handler(req, res, seen.length)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}/obj`,
    seen,
    close: async () => {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

for (const server of httpServers()) describe(`http plug-in against ${server.name}`, () => {
  // Named for the server these cases were first written against: it is whichever server the loop gives.
  let nginx: HttpServer
  let files: ReturnType<typeof filesUnder>
  beforeAll(async () => {
    nginx = await server.start()
    files = filesUnder(nginx.root, name => new URL(`${nginx.url}/${name}`))
  })
  afterAll(async () => await nginx?.stop())

  it('resumes with Range + If-Range, and reports a changed object instead of splicing it', async () => {
    const url = await files.seed('changing.bin', 2 * MiB)
    const plugin = http(LOCAL)
    const st = await plugin.stat(url)
    const tail = await collect(plugin.read(url, { offset: MiB, expect: st }))
    expect(sha256(tail)).toBe(sha256((await sourceBytes('changing.bin', 2 * MiB)).subarray(MiB)))
    await files.mutate('changing.bin')
    await expect(collect(plugin.read(url, { offset: MiB, expect: st }))).rejects.toBeInstanceOf(SourceChangedError)
    const gets = (await nginx.accessLog()).filter(l => l.startsWith('GET /changing.bin'))
    const ifRange = `if_range="${st.etag!.replaceAll('"', '\\x22')}"`
    expect(gets).toEqual([
      `GET /changing.bin 206 range="bytes=${MiB}-${2 * MiB - 1}" ${ifRange} bytes=${MiB}`,
      // If-Range did not match: the server sent the whole new object, which the plug-in refused.
      expect.stringMatching(new RegExp(`^GET /changing.bin 200 range="bytes=${MiB}-${2 * MiB - 1}" ${ifRange.replaceAll('\\', '\\\\')} `))
    ])
  })

  it('maps 404 to NotFoundError', async () => {
    const url = new URL(`${nginx.url}/missing.bin`)
    await expect(http(LOCAL).stat(url)).rejects.toBeInstanceOf(NotFoundError)
    await expect(collect(http(LOCAL).read(url, { offset: 5 }))).rejects.toBeInstanceOf(NotFoundError)
  })

  it('creates parent collections on PUT and leaves no temporary file behind an aborted one', async () => {
    const plugin = http(LOCAL)
    const w = await plugin.write(new URL(`${nginx.url}/deep/er/x.bin`), { offset: 0, key: 'k' })
    await w.write(Buffer.alloc(MiB, 1))
    await w.abort()
    const ok = await plugin.write(new URL(`${nginx.url}/deep/er/y.bin`), { offset: 0, key: 'k' })
    await ok.write(Buffer.from('y'))
    await ok.commit()
    expect(await readdir(join(nginx.root, 'deep', 'er'))).toEqual(['y.bin'])
  })
})

describe('http plug-in retries', () => {
  it('honours Retry-After on 503 before retrying', async () => {
    const s = await scripted((_req, res, n) => {
      if (n === 1) res.writeHead(503, { 'retry-after': '1' }).end()
      else res.writeHead(200, { 'content-length': '3', etag: '"v1"' }).end('abc')
    })
    try {
      // retryDelay 1 ms: a retry sooner than the server asked would show in the gap.
      const st = await http({ ...LOCAL, retryDelay: 1 }).stat(new URL(s.url))
      expect(st.size).toBe(3)
      expect(s.seen.length).toBe(2)
      expect(s.seen[1].at - s.seen[0].at).toBeGreaterThanOrEqual(950)
    } finally {
      await s.close()
    }
  })

  it('retries a 429 and a 500 with back-off, a bounded number of times', async () => {
    const s = await scripted((_req, res) => { res.writeHead(500).end() })
    try {
      await expect(http({ ...LOCAL, retries: 2, retryDelay: 1 }).stat(new URL(s.url))).rejects.toBeInstanceOf(NetworkError)
      expect(s.seen.length).toBe(3)
    } finally {
      await s.close()
    }
    const t = await scripted((_req, res, n) => {
      if (n < 3) res.writeHead(429).end()
      else res.writeHead(200, { 'content-length': '2' }).end('ok')
    })
    try {
      expect((await collect(http({ ...LOCAL, retryDelay: 1 }).read(new URL(t.url), { offset: 0 }))).toString()).toBe('ok')
      expect(t.seen.length).toBe(3)
    } finally {
      await t.close()
    }
  })

  it('gives up at once (retryable) when Retry-After asks for longer than it will wait', async () => {
    const s = await scripted((_req, res) => { res.writeHead(503, { 'retry-after': '3600' }).end() })
    try {
      await expect(http({ ...LOCAL, maxRetryDelay: 5000 }).stat(new URL(s.url))).rejects.toThrow(/retry after 3600 s/)
      expect(s.seen.length).toBe(1)
    } finally {
      await s.close()
    }
  })

  it('parses Retry-After seconds and dates', () => {
    expect(retryAfterMs('7')).toBe(7000)
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(10_000)
    expect(retryAfterMs('soon')).toBeUndefined()
  })

  it('maps 401 and 403 to PermissionDeniedError without retrying', async () => {
    const s = await scripted((_req, res, n) => { res.writeHead(n === 1 ? 401 : 403).end() })
    try {
      await expect(http(LOCAL).stat(new URL(s.url))).rejects.toBeInstanceOf(PermissionDeniedError)
      await expect(http(LOCAL).stat(new URL(s.url))).rejects.toBeInstanceOf(PermissionDeniedError)
      expect(s.seen.length).toBe(2)
    } finally {
      await s.close()
    }
  })
})

describe('http plug-in reads broken off midway', () => {
  const body = Buffer.alloc(256 << 10, 7)
  const half = body.length / 2

  /** First answer: half the body, then the connection drops. Later answers: `then`. */
  function dropsHalfway (then: (req: IncomingMessage, res: ServerResponse) => void) {
    return (req: IncomingMessage, res: ServerResponse, n: number) => {
      if (n > 1) return then(req, res)
      res.writeHead(200, { 'content-length': String(body.length), etag: '"v1"' })
      res.write(body.subarray(0, half), () => setTimeout(() => res.socket?.destroy(), 20))
    }
  }

  it('continues from where the body stopped with Range and If-Range', async () => {
    const s = await scripted(dropsHalfway((req, res) => {
      const from = Number(/^bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1])
      res.writeHead(206, { 'content-range': `bytes ${from}-${body.length - 1}/${body.length}`, etag: '"v1"' }).end(body.subarray(from))
    }))
    try {
      const got = await collect(http({ ...LOCAL, retryDelay: 1 }).read(new URL(s.url), { offset: 0 }))
      expect(got.equals(body)).toBe(true)
      expect(s.seen.length).toBe(2)
      expect(s.seen[1].headers['if-range']).toBe('"v1"')
      expect(s.seen[1].headers.range).toMatch(/^bytes=[1-9]\d*-/)
    } finally {
      await s.close()
    }
  })

  it('throws SourceChangedError when the object changed before the continuation', async () => {
    const s = await scripted(dropsHalfway((_req, res) => {
      res.writeHead(200, { 'content-length': String(body.length), etag: '"v2"' }).end(body)
    }))
    try {
      await expect(collect(http({ ...LOCAL, retryDelay: 1 }).read(new URL(s.url), { offset: 0 }))).rejects.toBeInstanceOf(SourceChangedError)
    } finally {
      await s.close()
    }
  })

  it('asks again when the server answers a range with fewer bytes than asked for', async () => {
    const cap = 100_000
    const s = await scripted((req, res) => {
      const from = Number(/^bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1])
      const to = Math.min(body.length, from + cap)
      res.writeHead(206, { 'content-range': `bytes ${from}-${to - 1}/${body.length}`, etag: '"v1"' }).end(body.subarray(from, to))
    })
    try {
      const got = await collect(http({ ...LOCAL, retries: 0 }).read(new URL(s.url), { offset: 1 }))
      expect(got.equals(body.subarray(1))).toBe(true)
      expect(s.seen.map(r => r.headers.range)).toEqual(['bytes=1-', `bytes=${1 + cap}-${body.length - 1}`, `bytes=${1 + 2 * cap}-${body.length - 1}`])
    } finally {
      await s.close()
    }
  })

  it('refuses to read from an offset when the server ignores Range', async () => {
    const s = await scripted((_req, res) => { res.writeHead(200, { 'content-length': String(body.length), etag: '"v1"' }).end(body) })
    try {
      await expect(collect(http(LOCAL).read(new URL(s.url), { offset: 10 }))).rejects.toBeInstanceOf(UnsupportedError)
    } finally {
      await s.close()
    }
  })
})

describe('http plug-in PUT refused by the server', () => {
  it('reports an early 403 as PermissionDeniedError', async () => {
    const s = await scripted((_req, res) => { res.writeHead(403, { connection: 'close' }).end() })
    try {
      const w = await http(LOCAL).write(new URL(s.url), { offset: 0, key: 'k' })
      await expect((async () => {
        for (let i = 0; i < 64; i++) await w.write(Buffer.alloc(MiB))
        await w.commit()
      })()).rejects.toBeInstanceOf(PermissionDeniedError)
      await w.abort()
    } finally {
      await s.close()
    }
  })
})
