import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashToken } from '../../coordinator/tokens.ts'
import { ADMIN, SecureApi, filesUnder } from './helpers.ts'

const copy = { source: 'agent://store-1/images/a.img', destination: 'agent://compute-1/scratch/a.img' }

describe('REST API: tokens, roles and tenants', () => {
  let api: SecureApi
  let opA: { id: string, token: string }
  let readerA: { id: string, token: string }
  let opB: { id: string, token: string }
  let transferA: string

  beforeAll(async () => {
    api = await SecureApi.start()
    opA = await api.mint('operator', 'team-a', { name: 'ci of team a' })
    readerA = await api.mint('reader', 'team-a')
    opB = await api.mint('operator', 'team-b')
    const created = await api.call('POST', '/v1/transfers', { token: opA.token, body: copy })
    expect(created.status).toBe(201)
    expect(created.body.tenant).toBe('team-a')
    transferA = created.body.id
  })
  afterAll(async () => { await api.stop() })

  it('shows a new token once, and never again: listings carry no secret or hash', async () => {
    expect(opA.token).toMatch(/^stc_[A-Za-z0-9_-]{43}$/)
    const list = await api.call('GET', '/v1/tokens')
    expect(list.status).toBe(200)
    const mine = list.body.items.find((t: { id: string }) => t.id === opA.id)
    expect(mine).toMatchObject({ role: 'operator', tenant: 'team-a', name: 'ci of team a', source: 'api' })
    expect(list.body.items.find((t: { source: string }) => t.source === 'bootstrap')).toMatchObject({ role: 'admin', tenant: '*' })
    for (const t of list.body.items) expect(Object.keys(t)).not.toContain('hash')
    for (const secret of [opA.token, readerA.token, opB.token, ADMIN]) {
      expect(list.text).not.toContain(secret)
      expect(list.text).not.toContain(hashToken(secret))
    }
  })

  it('keeps only hashes at rest: no clear token in any file of the stores', async () => {
    const files = await filesUnder(api.dir)
    const all = files.map(f => f.bytes).join('\n')
    // The hash is there (so the search itself works) …
    expect(all).toContain(hashToken(opA.token))
    expect(all).toContain(hashToken(ADMIN))
    // … and no token is.
    for (const secret of [opA.token, readerA.token, opB.token, ADMIN]) expect(all).not.toContain(secret)
  })

  it('tenant B cannot list, read, cancel or delete tenant A\'s transfers: 404 as if they did not exist', async () => {
    const asB = { token: opB.token }
    const list = await api.call('GET', '/v1/transfers', asB)
    expect(list.status).toBe(200)
    expect(list.body.items).toEqual([])
    const missing = await api.call('GET', '/v1/transfers/tr_00000000000000000000000000', asB)
    for (const [method, path] of [['GET', `/v1/transfers/${transferA}`], ['POST', `/v1/transfers/${transferA}/cancel`], ['DELETE', `/v1/transfers/${transferA}`]]) {
      const res = await api.call(method, path, asB)
      expect(res.status, `${method} ${path}`).toBe(404)
      expect(res.body.code).toBe('not_found')
      // Word for word what a transfer that does not exist gets, but for the id.
      expect(res.body.message.replace(transferA, 'ID')).toBe(missing.body.message.replace('tr_00000000000000000000000000', 'ID'))
    }
    // Still there, untouched, for its own tenant and for an admin of all tenants.
    expect((await api.call('GET', `/v1/transfers/${transferA}`, { token: readerA.token })).body.state).toBe('queued')
    const all = await api.call('GET', '/v1/transfers')
    expect(all.body.items.map((t: { id: string }) => t.id)).toContain(transferA)
  })

  it('enforces roles: readers read, operators manage transfers, only admins manage agents and tokens', async () => {
    const reader = { token: readerA.token }
    expect((await api.call('GET', '/v1/transfers', reader)).status).toBe(200)
    const denied = await api.call('POST', '/v1/transfers', { ...reader, body: copy })
    expect(denied.status).toBe(403)
    expect(denied.body).toEqual({ code: 'forbidden', message: 'a reader token may not POST /v1/transfers (needs operator)' })
    expect((await api.call('POST', `/v1/transfers/${transferA}/cancel`, reader)).status).toBe(403)
    for (const [method, path, body] of [
      ['GET', '/v1/tokens'], ['POST', '/v1/tokens', { role: 'admin', tenant: '*' }], ['DELETE', `/v1/tokens/${opA.id}`],
      ['GET', '/v1/agent-tokens'], ['POST', '/v1/agent-tokens', {}], ['GET', '/v1/agents'], ['GET', '/v1/agents/store-1']
    ] as Array<[string, string, unknown?]>) {
      const res = await api.call(method, path, { token: opA.token, body })
      expect(res.status, `${method} ${path}`).toBe(403)
      expect(res.body.code).toBe('forbidden')
    }
    // The operator's token was not revoked by its own attempt.
    expect((await api.call('GET', '/v1/transfers', { token: opA.token })).status).toBe(200)
    // A non-admin is not told which agents exist.
    const unknown = await api.call('POST', '/v1/transfers', { token: opA.token, body: { source: 'agent://nope/images/a', destination: copy.destination } })
    expect(unknown.status).toBe(422)
    expect(unknown.body.message).not.toContain('store-1')
  })

  it('refuses grants that make no sense', async () => {
    const cases: Array<[unknown, string]> = [
      [{ role: 'reader', tenant: '*' }, "tenant: '*' (all tenants) is for admin tokens only"],
      [{ role: 'root', tenant: 'a' }, 'body.role: must be one of reader, operator, admin'],
      [{ role: 'reader', tenant: 'A B' }, 'body.tenant'],
      [{ role: 'reader', tenant: 'a', expiresIn: '5 years' }, 'body.expiresIn'],
      [{ role: 'reader', tenant: 'a', colour: 'red' }, "body: unknown field 'colour'"]
    ]
    for (const [body, message] of cases) {
      const res = await api.call('POST', '/v1/tokens', { body })
      expect(res.status, JSON.stringify(body)).toBe(400)
      expect(res.body.message).toContain(message)
    }
  })

  it('answers every unknown token alike (401, the same body, nothing about which part was wrong), and a revoked or expired one with which', async () => {
    const revoked = await api.mint('operator', 'team-a')
    expect((await api.call('DELETE', `/v1/tokens/${revoked.id}`)).status).toBe(204)
    const expiring = await api.mint('operator', 'team-a', { expiresIn: '1h' })
    api.clock += 3600_000
    const wrong: Array<[string, string]> = [
      ['stc_' + 'A'.repeat(43), 'invalid token'], [revoked.token, 'token revoked'], [expiring.token, 'token expired'],
      [opA.token.slice(0, -1), 'invalid token'], [`${opA.token}x`, 'invalid token'], [opA.token.toUpperCase(), 'invalid token'], [hashToken(opA.token), 'invalid token']
    ]
    const answers = await Promise.all(wrong.map(async ([token]) => await api.call('GET', '/v1/transfers', { token })))
    for (const [i, res] of answers.entries()) {
      expect(res.status).toBe(401)
      expect(res.body).toEqual({ code: 'unauthorized', message: wrong[i][1] })
      expect(res.headers.get('www-authenticate')).toBe('Bearer')
    }
    api.clock -= 3600_000
    // Before its expiry the same token worked: it is the clock that refused it.
    expect((await api.call('GET', '/v1/transfers', { token: expiring.token })).status).toBe(200)
  })

  it('revokes at once, and for good: across a restart too', async () => {
    const victim = await api.mint('operator', 'team-c')
    const keep = await api.mint('reader', 'team-c')
    expect((await api.call('GET', '/v1/transfers', { token: victim.token })).status).toBe(200)
    expect((await api.call('DELETE', `/v1/tokens/${victim.id}`)).status).toBe(204)
    expect((await api.call('GET', '/v1/transfers', { token: victim.token })).status).toBe(401)
    const listed = (await api.call('GET', '/v1/tokens')).body.items.find((t: { id: string }) => t.id === victim.id)
    expect(listed.revokedAt).toBeDefined()
    await api.restart()
    expect((await api.call('GET', '/v1/transfers', { token: victim.token })).status).toBe(401)
    expect((await api.call('GET', '/v1/transfers', { token: keep.token })).status).toBe(200)
    expect((await api.call('DELETE', '/v1/tokens/tok_nosuchtoken')).status).toBe(404)
  })

  it('creates join tokens only for admins, hashed, single-use and expiring as asked', async () => {
    const res = await api.call('POST', '/v1/agent-tokens', { body: { singleUse: true, expiresIn: '1h', name: 'rack 7' } })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({ singleUse: true, name: 'rack 7', source: 'api' })
    expect(Date.parse(res.body.expiresAt) - Date.parse(res.body.createdAt)).toBe(3600_000)
    const list = await api.call('GET', '/v1/agent-tokens')
    expect(list.text).not.toContain(res.body.token)
    expect(list.body.items.map((t: { id: string }) => t.id)).toContain(res.body.id)
    // Spent by its first use, refused on the second.
    const who = { agent: 'new-1', peerId: '12D3KooWnew1' }
    expect(await api.tokens.useJoinToken(res.body.token, who)).toEqual({ ok: true, id: res.body.id })
    expect((await api.tokens.useJoinToken(res.body.token, { agent: 'new-2', peerId: '12D3KooWnew2' })).ok).toBe(false)
    const reusable = await api.call('POST', '/v1/agent-tokens', { body: { expiresIn: 60 } })
    expect((await api.tokens.useJoinToken(reusable.body.token, who)).ok).toBe(true)
    expect((await api.tokens.useJoinToken(reusable.body.token, who)).ok).toBe(true)
    api.clock += 61_000
    expect(await api.tokens.useJoinToken(reusable.body.token, who)).toMatchObject({ ok: false, reason: expect.stringContaining('expired') })
    api.clock -= 61_000
    expect((await api.call('DELETE', `/v1/agent-tokens/${reusable.body.id}`)).status).toBe(204)
    expect((await api.tokens.useJoinToken(reusable.body.token, who)).ok).toBe(false)
  })
})
