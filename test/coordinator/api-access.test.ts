import { afterEach, beforeEach, describe, it, expect } from 'vitest'
import { TOKEN, agent, tempApi, transferInput } from './helpers.ts'

describe('REST API: access, agents and errors', () => {
  let h: Awaited<ReturnType<typeof tempApi>>
  beforeEach(async () => {
    h = await tempApi({ tokens: [TOKEN, { token: 'tenant-b-token', tenant: 'b' }] })
  })
  afterEach(async () => { await h.cleanup() })

  it('serves /healthz without a token', async () => {
    const res = await h.app.inject({ url: '/healthz' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ ok: true })
  })

  it('answers 401 without a token, with a wrong one, or with another scheme', async () => {
    const cases: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer wrong' },
      { authorization: `Basic ${TOKEN}` },
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: 'Bearer' }
    ]
    for (const headers of cases) {
      const res = await h.app.inject({ url: '/v1/transfers', headers })
      expect(res.statusCode, JSON.stringify(headers)).toBe(401)
      expect(res.json().code).toBe('unauthorized')
      expect(res.headers['www-authenticate']).toBe('Bearer')
    }
    // A write without a token changes nothing.
    const res = await h.app.inject({ method: 'POST', url: '/v1/transfers', payload: transferInput('a', 'b') })
    expect(res.statusCode).toBe(401)
    expect(h.store.size).toBe(0)
  })

  it('answers 401 before revealing whether a route exists, then 404 as JSON', async () => {
    expect((await h.app.inject({ url: '/v1/nothing' })).statusCode).toBe(401)
    const res = await h.inject({ url: '/v1/nothing' })
    expect(res.statusCode).toBe(404)
    expect(res.json()).toEqual({ code: 'not_found', message: 'no route GET /v1/nothing' })
  })

  it('lists agents and shows one, 404 for an unknown name', async () => {
    await h.store.putAgent(agent('d', false))
    const list = await h.inject({ url: '/v1/agents' })
    expect(list.statusCode).toBe(200)
    expect(list.json().items.map((a: { name: string, online: boolean }) => [a.name, a.online])).toEqual([['a', true], ['b', true], ['c', true], ['d', false]])
    const one = await h.inject({ url: '/v1/agents/d' })
    expect(one.json()).toEqual(agent('d', false))
    const missing = await h.inject({ url: '/v1/agents/zz' })
    expect(missing.statusCode).toBe(404)
    expect(missing.json().code).toBe('not_found')
  })

  it("keeps tenants apart: another tenant's transfer is invisible", async () => {
    const created = await h.inject({ method: 'POST', url: '/v1/transfers', payload: transferInput('a', 'b'), headers: { 'idempotency-key': 'k' } })
    const { id } = created.json()
    const asB = (req: Parameters<typeof h.inject>[0]): ReturnType<typeof h.inject> => h.inject({ ...req, token: 'tenant-b-token' })
    expect((await asB({ url: `/v1/transfers/${id}` })).statusCode).toBe(404)
    expect((await asB({ method: 'POST', url: `/v1/transfers/${id}/cancel` })).statusCode).toBe(404)
    expect((await asB({ method: 'DELETE', url: `/v1/transfers/${id}` })).statusCode).toBe(404)
    expect((await asB({ url: '/v1/transfers' })).json()).toEqual({ items: [] })
    // The same idempotency key in another tenant is another transfer.
    const other = await asB({ method: 'POST', url: '/v1/transfers', payload: transferInput('a', 'c'), headers: { 'idempotency-key': 'k' } })
    expect(other.statusCode).toBe(201)
    expect(other.json().tenant).toBe('b')
    expect((await h.inject({ url: `/v1/transfers/${id}` })).json().state).toBe('queued')
  })

  it('serves over a real socket', async () => {
    const address = await h.app.listen({ host: '127.0.0.1', port: 0 })
    const res = await fetch(`${address}/v1/transfers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(transferInput('a', 'b'))
    })
    expect(res.status).toBe(201)
    const body = await res.json() as { id: string }
    const got = await fetch(`${address}/v1/transfers/${body.id}`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(await got.json()).toEqual(body)
  })
})
