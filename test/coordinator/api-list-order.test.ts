import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { tempApi, transferInput } from './helpers.ts'

type Api = Awaited<ReturnType<typeof tempApi>>
interface Page { items: Array<{ id: string }>, next?: string }

describe('GET /v1/transfers?order=desc', () => {
  let api: Api
  const ids: string[] = []

  beforeAll(async () => {
    api = await tempApi()
    for (let i = 0; i < 5; i++) {
      const res = await api.inject({ method: 'POST', url: '/v1/transfers', payload: transferInput('a', 'b', `${i}.img`) })
      ids.push((res.json() as { id: string }).id)
    }
  })
  afterAll(async () => { await api?.cleanup() })

  it('lists newest first, and its cursor pages on to older ones', async () => {
    const first = (await api.inject({ method: 'GET', url: '/v1/transfers?order=desc&limit=3' })).json() as Page
    expect(first.items.map(t => t.id)).toEqual([ids[4], ids[3], ids[2]])
    const rest = (await api.inject({ method: 'GET', url: `/v1/transfers?order=desc&limit=3&after=${first.next}` })).json() as Page
    expect(rest.items.map(t => t.id)).toEqual([ids[1], ids[0]])
    expect(rest.next).toBeUndefined()
  })

  it('keeps oldest first by default and refuses an unknown order', async () => {
    const page = (await api.inject({ method: 'GET', url: '/v1/transfers?limit=2' })).json() as Page
    expect(page.items.map(t => t.id)).toEqual([ids[0], ids[1]])
    expect((await api.inject({ method: 'GET', url: '/v1/transfers?order=newest' })).statusCode).toBe(400)
  })
})
