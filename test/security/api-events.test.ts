import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EventServices } from '../../coordinator/events/index.ts'
import { SecureApi } from './helpers.ts'

interface Hit { path: string, body: string }

/** Tenant A's events must never reach tenant B: not on the change feed, not on the live stream, not through a webhook. */
describe('events: each tenant sees only its own', () => {
  let api: SecureApi
  let receiver: Server
  let receiverUrl = ''
  const hits: Hit[] = []
  let teamA: string
  let teamB: string
  let readerB: string
  let hookA: string
  let transferA: string
  let transferB: string

  async function submit (token: string, file: string): Promise<string> {
    const res = await api.call('POST', '/v1/transfers', { token, body: { source: `agent://store-1/images/${file}`, destination: `agent://compute-1/scratch/${file}` } })
    if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${res.text}`)
    return res.body.id
  }

  async function until (check: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 400 && !check(); i++) await sleep(25)
    if (!check()) throw new Error(`timed out waiting for ${what}`)
  }

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = ''
      req.setEncoding('utf8')
      req.on('data', (c: string) => { body += c })
      req.on('end', () => {
        hits.push({ path: req.url ?? '', body })
        res.writeHead(204).end()
      })
    })
    await new Promise<void>(resolve => receiver.listen(0, '127.0.0.1', resolve))
    const addr = receiver.address()
    receiverUrl = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`
    // Loopback deliveries are refused by default; this test's receiver lives there.
    api = await SecureApi.start({}, store => new EventServices(store, { allow: ['loopback'], delivery: { intervalMs: 50 } }))
    teamA = (await api.mint('operator', 'team-a')).token
    teamB = (await api.mint('operator', 'team-b')).token
    readerB = (await api.mint('reader', 'team-b')).token
    const a = await api.call('POST', '/v1/webhooks', { token: teamA, body: { url: `${receiverUrl}/a`, topics: ['#'] } })
    const b = await api.call('POST', '/v1/webhooks', { token: teamB, body: { url: `${receiverUrl}/b`, topics: ['#'] } })
    expect([a.status, b.status]).toEqual([201, 201])
    hookA = a.body.id
    transferA = await submit(teamA, 'a.img')
    transferB = await submit(teamB, 'b.img')
  })
  afterAll(async () => {
    await api.stop()
    await new Promise(resolve => receiver.close(resolve))
  })

  it('the change feed', async () => {
    const asB = await api.call('GET', '/v1/changes?after=0', { token: readerB })
    expect(asB.status).toBe(200)
    expect(asB.body.items.some((e: { topic: string }) => e.topic.includes(transferB))).toBe(true)
    expect(asB.body.items.every((e: { tenant: string }) => e.tenant === 'team-b')).toBe(true)
    expect(asB.text).not.toContain(transferA)
    const asA = await api.call('GET', '/v1/changes?after=0', { token: teamA })
    expect(asA.text).toContain(transferA)
    expect(asA.text).not.toContain(transferB)
    const all = await api.call('GET', '/v1/changes?after=0')
    expect(all.text).toContain(transferA)
    expect(all.text).toContain(transferB)
  })

  it('the live stream', async () => {
    const abort = new AbortController()
    const res = await fetch(`${api.url}/v1/events?after=0`, { headers: { authorization: `Bearer ${readerB}` }, signal: abort.signal })
    expect(res.status).toBe(200)
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    const decoder = new TextDecoder()
    let text = ''
    try {
      // Tenant A's event comes first: if the stream leaked it, it would be read before B's.
      const laterA = await submit(teamA, 'a2.img')
      const laterB = await submit(teamB, 'b2.img')
      while (!text.includes(laterB)) {
        const { value, done } = await reader.read()
        if (done === true) break
        text += decoder.decode(value, { stream: true })
      }
      expect(text).toContain(transferB)
      expect(text).toContain(laterB)
      expect(text).not.toContain(transferA)
      expect(text).not.toContain(laterA)
      expect(text).not.toContain('team-a')
    } finally {
      abort.abort()
      await reader.cancel().catch(() => {})
    }
  })

  it('webhooks, and the webhook routes', async () => {
    await until(() => hits.some(h => h.path === '/a' && h.body.includes(transferA)) && hits.some(h => h.path === '/b' && h.body.includes(transferB)), 'both webhooks')
    expect(hits.filter(h => h.path === '/b').some(h => h.body.includes(transferA) || h.body.includes('team-a'))).toBe(false)
    expect(hits.filter(h => h.path === '/a').some(h => h.body.includes(transferB) || h.body.includes('team-b'))).toBe(false)
    const listed = await api.call('GET', '/v1/webhooks', { token: teamB })
    expect(listed.body.items.map((w: { url: string }) => w.url)).toEqual([`${receiverUrl}/b`])
    for (const [method, path] of [['GET', `/v1/webhooks/${hookA}`], ['GET', `/v1/webhooks/${hookA}/deliveries`], ['DELETE', `/v1/webhooks/${hookA}`]]) {
      expect((await api.call(method, path, { token: teamB })).status, `${method} ${path}`).toBe(404)
    }
    expect((await api.call('GET', `/v1/webhooks/${hookA}`, { token: teamA })).status).toBe(200)
  })
})
