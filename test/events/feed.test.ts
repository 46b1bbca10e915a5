import { afterEach, describe, expect, it } from 'vitest'
import { enforceRetention } from '../../coordinator/events/index.ts'
import type { StoreEvent, TransferState } from '../../coordinator/model.ts'
import type { TransferStore } from '../../coordinator/store.ts'
import { agent, transferInput } from '../coordinator/helpers.ts'
import { eventsApi } from './helpers.ts'

type Api = Awaited<ReturnType<typeof eventsApi>>
interface Page { items: StoreEvent[], next: number }

/** Every state change the test makes, in order: [transfer id, from, to]. */
type Change = [string, TransferState | null, TransferState]

async function drive (store: TransferStore, id: string, path: TransferState[], changes: Change[]): Promise<void> {
  let from: TransferState = 'queued'
  for (const to of path) {
    const patch = to === 'failed' || to === 'queued' ? { lastError: { code: 'network', message: 'x', retryable: to === 'queued', at: new Date().toISOString(), attempt: 1 } } : {}
    await store.transition(id, to, patch)
    changes.push([id, from, to])
    from = to
  }
}

const PATHS: TransferState[][] = [
  ['scheduled', 'active', 'verifying', 'succeeded'],
  ['scheduled', 'active', 'queued', 'scheduled', 'active', 'failed'],
  ['canceled'],
  ['scheduled', 'canceled'],
  ['failed']
]

async function page (api: Api, query: string, token?: string): Promise<Page> {
  const res = await api.inject({ method: 'GET', url: `/v1/changes?${query}`, token })
  expect(res.statusCode, res.body).toBe(200)
  return res.json<Page>()
}

describe('GET /v1/changes', () => {
  let api: Api | undefined
  afterEach(async () => { await api?.cleanup(); api = undefined })

  it('gives every state change of 1,000 transfers exactly once, in order, without gaps in seq', async () => {
    api = await eventsApi()
    const changes: Change[] = []
    const agentFlips: boolean[] = []
    for (let i = 0; i < 1000; i++) {
      const { record } = await api.store.create(transferInput('a', 'b', `f${i}.img`), { tenant: 'default' })
      changes.push([record.id, null, 'queued'])
      await drive(api.store, record.id, PATHS[i % PATHS.length], changes)
      if (i % 250 === 0) {
        const online = agentFlips.length % 2 === 0
        await api.store.putAgent(agent('a', online))
        agentFlips.push(online)
      }
    }
    expect(changes.length).toBeGreaterThan(3000)

    // Pages of uneven sizes, each starting from the previous page's cursor.
    const read: StoreEvent[] = []
    let after = 0
    const sizes = [1, 7, 250, 1000, 333]
    for (let i = 0; i < 1000; i++) {
      const p = await page(api, `after=${after}&limit=${sizes[i % sizes.length]}`)
      if (p.items.length === 0) {
        expect(p.next).toBe(after)
        break
      }
      read.push(...p.items)
      expect(p.next).toBe(p.items.at(-1)?.seq)
      after = p.next
    }

    expect(read.map(e => e.seq)).toEqual(Array.from({ length: read.length }, (_, i) => i + 1))
    expect(after).toBe(api.store.seq)
    const states = read.filter(e => e.topic.endsWith('.state'))
    expect(states.map(e => [e.topic.split('.')[1], e.data.from, e.data.to])).toEqual(changes)
    const agents = read.filter(e => e.topic === 'agent.a.online')
    expect(agents.map(e => e.data.online)).toEqual(agentFlips)
    expect(states.length + agents.length).toBe(read.length)
    expect(new Set(read.map(e => e.id)).size).toBe(read.length)
    expect(states.find(e => e.data.to === 'failed')?.data.error).toMatchObject({ code: 'network', retryable: false })
  })

  it('long-polls: waits for an event the caller may see and returns it', async () => {
    api = await eventsApi({ agents: ['a', 'b'] })
    const start = api.store.seq
    const poll = page(api, `after=${start}&wait=30&topics=transfer.*.state`)
    // Not for these topics: the poll must go on waiting past them.
    await api.store.putAgent(agent('c'))
    const { record } = await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    const p = await poll
    expect(p.items.map(e => e.topic)).toEqual([`transfer.${record.id}.state`])
    expect(p.next).toBe(api.store.seq)
  })

  it('answers an empty page with the same cursor when the wait ends without events', async () => {
    api = await eventsApi()
    await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    const p = await page(api, `after=${api.store.seq}&wait=0.05`)
    expect(p).toEqual({ items: [], next: api.store.seq })
  })

  it('moves the cursor past events the filter hides, so a reader does not scan them again', async () => {
    api = await eventsApi()
    for (let i = 0; i < 5; i++) await api.store.putAgent(agent('a', i % 2 === 0))
    const p = await page(api, `after=0&topics=${encodeURIComponent('transfer.#')}`)
    expect(p).toEqual({ items: [], next: api.store.seq })
  })

  it('answers 410 cursor_expired with the oldest seq kept once retention deleted what a cursor needs', async () => {
    api = await eventsApi()
    const old = Date.now() - 10 * 24 * 3600_000
    for (let i = 0; i < 10; i++) await api.store.create(transferInput('a', 'b', `old${i}.img`), { tenant: 'default', now: old + i })
    for (let i = 0; i < 10; i++) await api.store.create(transferInput('a', 'b', `new${i}.img`), { tenant: 'default' })
    expect(await enforceRetention(api.store, { maxAgeMs: 7 * 24 * 3600_000, maxCount: 1000, intervalMs: 1000 }, new AbortController().signal)).toBe(10)

    const expired = await api.inject({ method: 'GET', url: '/v1/changes?after=3' })
    expect(expired.statusCode).toBe(410)
    expect(expired.json()).toMatchObject({ code: 'cursor_expired', oldest: 11 })
    const fromOldest = await page(api, 'after=10')
    expect(fromOldest.items.map(e => e.seq)).toEqual([11, 12, 13, 14, 15, 16, 17, 18, 19, 20])

    // By count as well; the trimmed position survives a restart.
    await enforceRetention(api.store, { maxAgeMs: 7 * 24 * 3600_000, maxCount: 4, intervalMs: 1000 }, new AbortController().signal)
    expect(api.store.trimmedThrough).toBe(16)
    expect((await api.inject({ method: 'GET', url: '/v1/changes?after=10' })).json()).toMatchObject({ code: 'cursor_expired', oldest: 17 })
  })

  it('keeps tenants apart; agent events only for admins', async () => {
    api = await eventsApi({
      tokens: [
        { token: 'token-acme-0123456789', tenant: 'acme', role: 'operator' },
        { token: 'token-bolt-0123456789', tenant: 'bolt', role: 'reader' },
        { token: 'token-acme-admin-0123', tenant: 'acme', role: 'admin' },
        'token-root-0123456789'
      ]
    })
    const acme = await api.store.create(transferInput('a', 'b'), { tenant: 'acme' })
    const bolt = await api.store.create(transferInput('a', 'c'), { tenant: 'bolt' })
    await api.store.putAgent(agent('a'))
    await api.store.transition(acme.record.id, 'canceled')
    await api.store.transition(bolt.record.id, 'canceled')

    const topics = async (token: string): Promise<string[]> => (await page(api as Api, 'after=0', token)).items.map(e => e.topic)
    expect(await topics('token-acme-0123456789')).toEqual([`transfer.${acme.record.id}.state`, `transfer.${acme.record.id}.state`])
    expect(await topics('token-bolt-0123456789')).toEqual([`transfer.${bolt.record.id}.state`, `transfer.${bolt.record.id}.state`])
    expect(await topics('token-acme-admin-0123')).toEqual([`transfer.${acme.record.id}.state`, 'agent.a.online', `transfer.${acme.record.id}.state`])
    expect(await topics('token-root-0123456789')).toHaveLength(5)
  })

  it('refuses malformed patterns and cursors', async () => {
    api = await eventsApi()
    for (const q of ['topics=transfer.st*', 'topics=a..b', 'after=-1', 'limit=0', 'wait=61']) {
      const res = await api.inject({ method: 'GET', url: `/v1/changes?${q}` })
      expect(res.statusCode, q).toBe(400)
      expect(res.json().code).toBe('invalid_argument')
    }
  })
})

describe('topic wildcards on the feed', () => {
  let api: Api | undefined
  afterEach(async () => { await api?.cleanup(); api = undefined })

  it('* stands for one word, # for any number of words', async () => {
    api = await eventsApi({ agents: ['a', 'b'] })
    const { record } = await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    await api.store.transition(record.id, 'scheduled')
    await api.store.transition(record.id, 'active')
    await api.store.setProgress(record.id, { bytesDone: 10 })
    await api.store.transition(record.id, 'canceled')
    await api.store.remove(record.id)
    const t = `transfer.${record.id}`
    const topics = async (patterns: string): Promise<string[]> => (await page(api as Api, `after=0&topics=${encodeURIComponent(patterns)}`)).items.map(e => e.topic)

    expect(await topics('transfer.*.state')).toEqual([`${t}.state`, `${t}.state`, `${t}.state`, `${t}.state`])
    expect(await topics('transfer.*')).toEqual([])
    expect(await topics('transfer.#')).toEqual([`${t}.state`, `${t}.state`, `${t}.state`, `${t}.progress`, `${t}.state`, `${t}.deleted`])
    expect(await topics(`${t}.#`)).toHaveLength(6)
    expect(await topics('*.*.deleted,agent.#')).toEqual(['agent.a.online', 'agent.b.online', `${t}.deleted`])
    expect(await topics('#.online')).toEqual(['agent.a.online', 'agent.b.online'])
    expect(await topics('agent.*')).toEqual([])
    expect(await topics('#')).toHaveLength(8)
  })
})
