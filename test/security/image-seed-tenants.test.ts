import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { InjectOptions } from 'fastify'
import { buildApi } from '../../coordinator/api/index.ts'
import type { ApiInstance } from '../../coordinator/api/index.ts'
import { ImageHolders } from '../../coordinator/image-seed.ts'
import { agent, tempStore } from '../coordinator/helpers.ts'

const ADMIN = 'image-seed-admin-token'
const TEAM_A = 'image-seed-team-a-token'
const TEAM_B = 'image-seed-team-b-token'
const TEAM_C = 'image-seed-team-c-token'
const IMAGE = 'oci://reg.example/team/app:1'

interface Answer { status: number, body: { source: string, code?: string, message?: string, destinations?: Array<{ agent: string }> } }

/**
 * Each team may use its own agents only. Team a's names sort before team b's,
 * so a seed chosen by name alone, or the agent that seeded an image last for
 * team a, would be one of team a's agents for team b's request too.
 */
const TENANTS = {
  'team-a': { agents: ['ta-*'] },
  'team-b': { agents: ['tb-*'] },
  'team-c': { agents: ['tc-*'] }
}

describe('REST API: the seed chosen for an image distribution is one the requester may use', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  let app: ApiInstance
  const call = async (token: string, req: InjectOptions): Promise<Answer> => {
    const res = await app.inject({ ...req, headers: { authorization: `Bearer ${token}` } })
    return { status: res.statusCode, body: res.json() }
  }
  const distribute = async (token: string, destinations: string[], source = IMAGE): Promise<Answer> =>
    await call(token, { method: 'POST', url: '/v1/transfers', payload: { source, destinations: destinations.map(d => `agent://${d}/images/app/`) } })
  const via = (body: { source: string }): string | null => new URL(body.source).searchParams.get('via')

  beforeAll(async () => {
    h = await tempStore()
    for (const name of ['ta-seed', 'ta-d1', 'ta-d2', 'tb-seed', 'tb-d1', 'tb-d2', 'tc-d1', 'tc-d2']) {
      const plugins = name.startsWith('tc-') ? ['agent', 'file'] : ['agent', 'file', 'oci']
      await h.store.putAgent({ ...agent(name), plugins })
    }
    app = buildApi({
      store: h.store,
      tenants: TENANTS,
      imageHolders: new ImageHolders(),
      tokens: [ADMIN, { token: TEAM_A, tenant: 'team-a', role: 'operator' }, { token: TEAM_B, tenant: 'team-b', role: 'operator' }, { token: TEAM_C, tenant: 'team-c', role: 'operator' }]
    })
  })
  afterAll(async () => {
    await app.close()
    await h.cleanup()
  })

  it('picks a seed among the agents of the requester\'s tenant, not the first agent by name', async () => {
    const b = await distribute(TEAM_B, ['tb-d1', 'tb-d2'], 'oci://reg.example/team/first:1')
    expect(b.status, JSON.stringify(b.body)).toBe(201)
    expect(via(b.body)).toBe('tb-seed')
  })

  it('reuses the agent that seeded an image last only for a tenant that may use it', async () => {
    const a = await distribute(TEAM_A, ['ta-d1', 'ta-d2'])
    expect(a.status, JSON.stringify(a.body)).toBe(201)
    expect(via(a.body)).toBe('ta-seed')
    // Team a's seed holds the image now; team b is given its own seed, and is not told of ta-seed.
    const b = await distribute(TEAM_B, ['tb-d1', 'tb-d2'])
    expect(b.status, JSON.stringify(b.body)).toBe(201)
    expect(via(b.body)).toBe('tb-seed')
    // An admin of all tenants may use any agent: the last seed of the image (team b's now) serves again.
    const admin = await distribute(ADMIN, ['ta-d1', 'ta-d2'])
    expect(admin.status, JSON.stringify(admin.body)).toBe(201)
    expect(via(admin.body)).toBe('tb-seed')
  })

  it('preheats with a seed the requester may use, whoever preheated the image before', async () => {
    const image = 'oci://reg.example/team/preheated:1'
    const a = await call(TEAM_A, { method: 'POST', url: '/v1/images/preheat', payload: { image, agents: ['ta-seed', 'ta-d1'] } })
    expect(a.status, JSON.stringify(a.body)).toBe(201)
    expect(via(a.body)).toBe('ta-seed')
    const b = await call(TEAM_B, { method: 'POST', url: '/v1/images/preheat', payload: { image, agents: ['tb-d1', 'tb-d2'] } })
    expect(b.status, JSON.stringify(b.body)).toBe(201)
    expect(via(b.body)).toBe('tb-d1')
    expect(b.body.destinations?.map(d => d.agent)).toEqual(['tb-d2'])
  })

  it('refuses with a 400 that names no other tenant\'s agent when the tenant has no agent to seed', async () => {
    const c = await distribute(TEAM_C, ['tc-d1', 'tc-d2'])
    expect(c.status).toBe(400)
    expect(c.body.code).toBe('invalid_argument')
    expect(c.body.message).toMatch(/\?via=/)
    expect(c.body.message).not.toMatch(/ta-|tb-/)
  })
})
