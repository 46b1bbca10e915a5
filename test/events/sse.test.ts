import { afterEach, describe, expect, it } from 'vitest'
import type { AddressInfo } from 'node:net'
import { setImmediate } from 'node:timers/promises'
import { enforceRetention } from '../../coordinator/events/index.ts'
import { agent, transferInput } from '../coordinator/helpers.ts'
import { SseClient, TOKEN, eventsApi } from './helpers.ts'

type Api = Awaited<ReturnType<typeof eventsApi>>

async function listen (api: Api): Promise<string> {
  await api.app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(api.app.server.address() as AddressInfo).port}`
}

/** Quick events (not synced) to fill the log. */
async function appendMany (api: Api, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await api.store.appendEvent('test.filler', 'default', { i }, { sync: false })
}

async function createMany (api: Api, n: number, tenant = 'default'): Promise<void> {
  for (let i = 0; i < n; i++) await api.store.create(transferInput('a', 'b', `f${api.store.seq}-${i}.img`), { tenant })
}

describe('GET /v1/events (Server-Sent Events)', () => {
  let api: Api | undefined
  const clients: SseClient[] = []
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close()
    await api?.cleanup()
    api = undefined
  })

  async function open (base: string, query = '', headers: Record<string, string> = {}, token = TOKEN): Promise<SseClient> {
    const c = await SseClient.open(`${base}/v1/events${query}`, { authorization: `Bearer ${token}`, ...headers })
    clients.push(c)
    return c
  }

  it('resumes with Last-Event-ID after a disconnect: nothing missed, nothing twice, also across the replay/live seam', async () => {
    api = await eventsApi()
    const base = await listen(api)
    await createMany(api, 5)

    const first = await open(base, '', { 'last-event-id': '0' })
    expect(first.status).toBe(200)
    await first.until(c => c.events().length === 5, 'the replay')
    await createMany(api, 5)
    await first.until(c => c.events().length === 10, 'live events')
    const lastId = first.lastEventId() as string
    expect(lastId).toBe('10')
    first.close()

    // Missed while away: enough that the replay takes several reads, during which more events arrive.
    await appendMany(api, 3000)
    let writing = true
    const writer = (async () => {
      for (let i = 0; i < 2000 && writing; i++) {
        await api?.store.appendEvent('test.live', 'default', { i }, { sync: false })
        if (i % 10 === 0) await setImmediate()
      }
    })()
    const second = await open(base, '', { 'last-event-id': lastId })
    await second.until(c => (c.events().at(-1)?.seq ?? 0) > 3200, 'replay and some live events')
    writing = false
    await writer
    const total = api.store.seq
    await second.until(c => c.events().at(-1)?.seq === total, 'every event up to the last one written')

    const seqs = [...first.events(), ...second.events()].map(e => e.seq)
    expect(seqs).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    // The data is the event as the log has it.
    expect(second.events()[0]).toEqual((await api.store.readEvents(10, 1))[0])
  })

  it('starts with new events only when no cursor is given', async () => {
    api = await eventsApi()
    const base = await listen(api)
    await createMany(api, 3)
    const c = await open(base)
    await createMany(api, 2)
    await c.until(c => c.events().length === 2, 'two new events')
    expect(c.events().map(e => e.seq)).toEqual([4, 5])
  })

  it('filters by topic and tenant, and moves Last-Event-ID past hidden events in heartbeats', async () => {
    api = await eventsApi({
      events: { stream: { heartbeatMs: 50 } },
      tokens: [{ token: 'token-acme-0123456789', tenant: 'acme', role: 'reader' }, TOKEN]
    })
    const base = await listen(api)
    const acme = await open(base, `?after=0&topics=${encodeURIComponent('transfer.*.state')}`, {}, 'token-acme-0123456789')
    const agents = await open(base, `?after=0&topics=${encodeURIComponent('agent.#')}`)
    await createMany(api, 3, 'bolt')
    await createMany(api, 2, 'acme')
    await api.store.putAgent(agent('z'))
    await acme.until(c => c.events().length === 2, 'acme events')
    expect(acme.events().every(e => e.tenant === 'acme')).toBe(true)
    await agents.until(c => c.events().length === 1, 'the agent event')
    expect(agents.events()[0].topic).toBe('agent.z.online')
    // Heartbeats are comment lines; after hidden events they also carry the cursor.
    await acme.until(c => c.messages.some(m => m.comment === 'ping'), 'a heartbeat')
    await acme.until(c => c.lastEventId() === String(api?.store.seq), 'a heartbeat with the latest seq')
  })

  it('answers 410 when Last-Event-ID is older than what retention kept, and 400 for a bad pattern', async () => {
    api = await eventsApi()
    const base = await listen(api)
    await createMany(api, 10)
    await enforceRetention(api.store, { maxAgeMs: 1e12, maxCount: 5, intervalMs: 1000 }, new AbortController().signal)
    const gone = await open(base, '', { 'last-event-id': '2' })
    expect(gone.status).toBe(410)
    const ok = await open(base, '', { 'last-event-id': '5' })
    await ok.until(c => c.events().length === 5, 'the kept events')
    const bad = await open(base, `?topics=${encodeURIComponent('a.b*')}`)
    expect(bad.status).toBe(400)
  })

  it('ends open streams when the server closes', async () => {
    api = await eventsApi()
    const base = await listen(api)
    const c = await open(base)
    await api.app.close()
    await c.until(c => c.ended, 'the end of the stream').catch(err => {
      if (!c.ended) throw err
    })
    expect(c.ended).toBe(true)
  })
})
