import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { LookupAddress } from 'node:dns'
import { AddressPolicy } from '../../mesh/index.ts'
import type { DeliveryLogEntry } from '../../coordinator/events/index.ts'
import { transferInput } from '../coordinator/helpers.ts'
import { FakeClock } from '../coordinator/fake-clock.ts'
import { Receiver, eventsApi } from './helpers.ts'

type Api = Awaited<ReturnType<typeof eventsApi>>
interface Created { id: string, secret: string, enabled: boolean }

// The production schedule's first three delays, on a fake clock: a test moves virtual time, and waits for nothing but deliveries.
const FAST = { allow: ['loopback' as const], delivery: { retryScheduleMs: [5_000, 30_000, 120_000], jitter: 0 } }

describe('webhooks', () => {
  let api: Api | undefined
  let receiver: Receiver
  let clock: FakeClock
  beforeEach(async () => {
    receiver = await Receiver.start()
    clock = new FakeClock()
  })
  afterEach(async () => {
    await api?.cleanup()
    api = undefined
    await receiver.close()
  })

  async function subscribe (topics: string[], token?: string, extra: Record<string, unknown> = {}): Promise<Created> {
    const res = await (api as Api).inject({ method: 'POST', url: '/v1/webhooks', payload: { url: receiver.url, topics, ...extra }, token })
    expect(res.statusCode, res.body).toBe(201)
    const created = res.json<Created>()
    receiver.secret = created.secret
    return created
  }

  /** Moves virtual time on, a second at a time, until `check` holds (at most ten virtual hours). */
  async function advanceUntil (check: () => boolean | Promise<boolean>, what: string): Promise<void> {
    for (let s = 0; s < 36_000; s++) {
      if (await check()) return
      await clock.advance(1000)
    }
    throw new Error(`gave up waiting for ${what}`)
  }

  async function deliveries (id: string): Promise<{ items: DeliveryLogEntry[], pending: number }> {
    const res = await (api as Api).inject({ method: 'GET', url: `/v1/webhooks/${id}/deliveries` })
    expect(res.statusCode, res.body).toBe(200)
    return res.json()
  }

  it('delivers matching events once each, signed by the Standard Webhooks scheme, with a secret shown only at creation', async () => {
    api = await eventsApi({ events: FAST, clock, start: true })
    const hook = await subscribe(['transfer.*.state'])
    expect(hook.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/)
    const listed = await api.inject({ method: 'GET', url: '/v1/webhooks' })
    expect(listed.json().items).toEqual([expect.objectContaining({ id: hook.id, enabled: true })])
    expect(listed.body).not.toContain(hook.secret)
    expect((await api.inject({ method: 'GET', url: `/v1/webhooks/${hook.id}` })).body).not.toContain('whsec_')

    const { record } = await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    await api.store.setProgress(record.id, { bytesDone: 1 })
    await api.store.transition(record.id, 'canceled')
    await receiver.until(d => d.length === 2, 'two state events')
    const events = await api.store.readEvents(0, 100)
    const states = events.filter(e => e.topic.endsWith('.state'))
    expect(receiver.deliveries.map(d => d.id).sort()).toEqual(states.map(e => e.id).sort())
    expect(receiver.deliveries.every(d => d.verified)).toBe(true)
    for (const d of receiver.deliveries) {
      const body = JSON.parse(d.body) as { type: string, timestamp: string, data: { id: string } }
      expect(body.type).toBe(d.event.topic)
      expect(states.find(e => e.id === d.id)).toEqual(d.event)
    }
    await expect.poll(async () => (await deliveries(hook.id)).items.filter(i => i.outcome === 'delivered').length).toBe(2)
    // A wrong secret does not verify: the check is real.
    receiver.secret = 'whsec_' + Buffer.alloc(32, 1).toString('base64')
    const d = receiver.deliveries[0]
    const { checkSignature } = await import('./helpers.ts')
    expect(checkSignature(receiver.secret, d.id, d.timestamp, d.body, 'v1,' + Buffer.alloc(32).toString('base64'))).toBe(false)
  })

  it('retries with the same webhook-id until the endpoint accepts, and logs every attempt', async () => {
    api = await eventsApi({ events: FAST, clock, start: true })
    const hook = await subscribe(['#'])
    receiver.mode = 'fail'
    await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    await advanceUntil(() => receiver.deliveries.length >= 2, 'two failed attempts')
    receiver.mode = 'ok'
    await advanceUntil(() => receiver.deliveries.some(x => x.status === 204), 'the accepted attempt')
    expect(new Set(receiver.deliveries.map(d => d.id)).size).toBe(1)
    expect(receiver.deliveries.every(d => d.verified)).toBe(true)
    await expect.poll(async () => (await deliveries(hook.id)).items[0]?.outcome).toBe('delivered')
    const log = (await deliveries(hook.id)).items.reverse()
    expect(log.map(l => [l.attempt, l.outcome, l.status])).toEqual(
      receiver.deliveries.map((d, i) => [i + 1, d.status === 204 ? 'delivered' : 'retrying', d.status])
    )
    expect(log.every(l => l.messageId === receiver.deliveries[0].id)).toBe(true)
  })

  it('gives up after the last retry of the schedule', async () => {
    api = await eventsApi({ events: FAST, clock, start: true })
    const hook = await subscribe(['#'])
    receiver.mode = 'fail'
    await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    await advanceUntil(async () => (await deliveries(hook.id)).items[0]?.outcome === 'failed', 'the delivery to be given up')
    expect(receiver.deliveries).toHaveLength(4)
    expect((await deliveries(hook.id)).pending).toBe(0)
  })

  it('honours Retry-After', async () => {
    api = await eventsApi({ events: FAST, clock, start: true })
    const hook = await subscribe(['#'])
    receiver.mode = { status: 429, headers: { 'retry-after': '120' } }
    await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    await expect.poll(async () => (await deliveries(hook.id)).items.length).toBe(1)
    const [entry] = (await deliveries(hook.id)).items
    expect(entry).toMatchObject({ outcome: 'retrying', status: 429, attempt: 1 })
    expect(Date.parse(entry.nextAttemptAt as string) - Date.parse(entry.at)).toBe(120_000)
    expect((await deliveries(hook.id)).pending).toBe(1)
  })

  it('disables a webhook whose endpoint answers 410 Gone', async () => {
    api = await eventsApi({ events: FAST, clock, start: true })
    const hook = await subscribe(['#'])
    receiver.mode = 'gone'
    await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    await expect.poll(async () => (await api?.inject({ method: 'GET', url: `/v1/webhooks/${hook.id}` }))?.json().enabled).toBe(false)
    const shown = (await api.inject({ method: 'GET', url: `/v1/webhooks/${hook.id}` })).json()
    expect(shown.disabledReason).toMatch(/410/)
    await api.store.create(transferInput('a', 'c'), { tenant: 'default' })
    expect(api.events.outbox.pendingFor(hook.id)).toEqual([])
    expect((await deliveries(hook.id)).items.map(i => i.outcome)).toEqual(['gone'])
  })

  it('sends a transfer\'s events to its callbackUrl, signed with the tenant\'s callback secret', async () => {
    api = await eventsApi({ events: FAST, clock, start: true, agents: ['a', 'b'] })
    const secret = await api.inject({ method: 'GET', url: '/v1/webhooks/callback-secret' })
    receiver.secret = secret.json().secret
    const res = await api.inject({ method: 'POST', url: '/v1/transfers', payload: { ...transferInput('a', 'b'), callbackUrl: receiver.url } })
    expect(res.statusCode, res.body).toBe(201)
    const id = res.json().id as string
    expect(res.json().callbackUrl).toBe(receiver.url)
    // Another transfer without a callback: nothing of it arrives.
    await api.store.create(transferInput('a', 'b', 'other.img'), { tenant: 'default' })
    await api.inject({ method: 'POST', url: `/v1/transfers/${id}/cancel` })
    await receiver.until(d => d.length === 2, 'both state events of the transfer')
    expect(receiver.deliveries.map(d => [d.event.topic, d.event.data.to])).toEqual([[`transfer.${id}.state`, 'queued'], [`transfer.${id}.state`, 'canceled']])
    expect(receiver.deliveries.every(d => d.verified)).toBe(true)
  })

  it('keeps tenants apart: events, listing, reading and deleting', async () => {
    const acme = 'token-acme-0123456789'
    const bolt = 'token-bolt-0123456789'
    api = await eventsApi({ events: FAST, clock, start: true, tokens: [{ token: acme, tenant: 'acme', role: 'operator' }, { token: bolt, tenant: 'bolt', role: 'operator' }] })
    const hook = await subscribe(['#'], acme)
    await api.store.create(transferInput('a', 'b'), { tenant: 'bolt' })
    await api.store.create(transferInput('a', 'b'), { tenant: 'acme' })
    await receiver.until(d => d.length >= 1, 'the acme event')
    expect(receiver.deliveries.map(d => d.event.tenant)).toEqual(['acme'])
    expect((await api.inject({ method: 'GET', url: '/v1/webhooks', token: bolt })).json().items).toEqual([])
    expect((await api.inject({ method: 'GET', url: `/v1/webhooks/${hook.id}`, token: bolt })).statusCode).toBe(404)
    expect((await api.inject({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: bolt })).statusCode).toBe(404)
    expect((await api.inject({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, token: acme })).statusCode).toBe(204)
    expect((await api.inject({ method: 'GET', url: `/v1/webhooks/${hook.id}`, token: acme })).statusCode).toBe(404)
  })

  it('a deleted webhook loses its pending deliveries and its log', async () => {
    api = await eventsApi({ events: FAST, clock, start: true })
    const hook = await subscribe(['#'])
    receiver.mode = { status: 503, headers: { 'retry-after': '3600' } }
    await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    await expect.poll(async () => (await deliveries(hook.id)).items.length).toBe(1)
    expect(api.events.outbox.pendingFor(hook.id)).toHaveLength(1)
    expect((await api.inject({ method: 'DELETE', url: `/v1/webhooks/${hook.id}` })).statusCode).toBe(204)
    expect(api.events.outbox.pendingFor(hook.id)).toEqual([])
    expect(await api.store.readAux({ gt: `d!${hook.id}!`, lt: `d!${hook.id}~` })).toEqual([])
    expect(await api.store.readAux({ gt: 'o!', lt: 'o~' })).toEqual([])
  })

  it('refuses webhook secrets and patterns that are not well formed', async () => {
    api = await eventsApi({ events: FAST })
    for (const payload of [
      { url: receiver.url, topics: ['a.b*'] },
      { url: receiver.url, topics: [] },
      { url: receiver.url, topics: ['#'], secret: 'whsec_c2hvcnQ=' },
      { url: 'ftp://example.com/', topics: ['#'] },
      { url: 'http://user:pw@example.com/', topics: ['#'] }
    ]) {
      const res = await api.inject({ method: 'POST', url: '/v1/webhooks', payload })
      expect(res.statusCode, JSON.stringify(payload)).toBe(400)
    }
  })
})

describe('address policy (no deliveries to link-local and metadata addresses)', () => {
  let api: Api | undefined
  let receiver: Receiver | undefined
  afterEach(async () => {
    await api?.cleanup()
    api = undefined
    await receiver?.close()
    receiver = undefined
  })

  it('refuses link-local, metadata and (unless allowed) loopback literals when a webhook is created', async () => {
    api = await eventsApi({ events: { allow: [] } })
    for (const url of [
      'http://169.254.169.254/latest/meta-data/',
      'http://169.254.10.1/',
      'http://[fe80::1]/',
      'http://[::ffff:169.254.169.254]/',
      'http://[fd00:ec2::254]/',
      'http://metadata.google.internal/computeMetadata/v1/',
      'http://METADATA.google.internal./',
      'http://127.0.0.1:9/',
      'http://0x7f.1/',
      'http://[::1]/'
    ]) {
      const res = await api.inject({ method: 'POST', url: '/v1/webhooks', payload: { url, topics: ['#'] } })
      expect(res.statusCode, url).toBe(400)
      expect(res.json().code, url).toBe('address_refused')
    }
  })

  it('checks the address a name resolves to, where the connection is made', async () => {
    receiver = await Receiver.start()
    // `localhost` passes the check at creation (it is a name); it resolves to loopback, which is not allowed here.
    api = await eventsApi({ events: { allow: [], delivery: { retryScheduleMs: [10], intervalMs: 10 } }, start: true })
    const res = await api.inject({ method: 'POST', url: '/v1/webhooks', payload: { url: `http://localhost:${receiver.port}/hook`, topics: ['#'] } })
    expect(res.statusCode, res.body).toBe(201)
    const id = res.json().id as string
    await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    await expect.poll(async () => (await api?.inject({ method: 'GET', url: `/v1/webhooks/${id}/deliveries` }))?.json().items[0]?.outcome).toBe('refused')
    const [entry] = (await api.inject({ method: 'GET', url: `/v1/webhooks/${id}/deliveries` })).json().items
    expect(entry.error).toMatch(/loopback/)
    expect(receiver.deliveries).toEqual([])
  })

  it('classifies addresses and refuses a name that resolves to link-local, whatever else it resolves to', async () => {
    const resolver = ((host: string, _opts: unknown, cb: (err: null, a: LookupAddress[]) => void) => {
      const table: Record<string, LookupAddress[]> = {
        'sneaky.test': [{ address: '93.184.216.34', family: 4 }, { address: '169.254.169.254', family: 4 }],
        'fine.test': [{ address: '93.184.216.34', family: 4 }]
      }
      process.nextTick(() => cb(null, table[host] ?? []))
    }) as never
    const policy = new AddressPolicy([], resolver)
    expect(policy.classify('169.254.169.254')).toEqual(['link-local', 'metadata'])
    expect(policy.classify('fe80::abcd')).toEqual(['link-local'])
    expect(policy.classify('::ffff:127.0.0.1')).toEqual(['loopback'])
    expect(policy.classify('10.0.0.1')).toEqual(['private'])
    expect(policy.classify('93.184.216.34')).toEqual([])
    expect(new AddressPolicy(['10.1.0.0/16']).refusal('10.1.2.3')).toBeUndefined()
    expect(new AddressPolicy(['10.1.0.0/16']).refusal('10.2.0.1')).toMatch(/private/)
    // A range never opens the metadata service; only the metadata class does.
    expect(new AddressPolicy(['169.254.0.0/16']).refusal('169.254.169.254')).toMatch(/metadata/)
    expect(new AddressPolicy(['fd00::/8']).refusal('fd00:ec2::254')).toMatch(/metadata/)
    expect(new AddressPolicy(['fd00::/8']).refusal('fd00::1')).toBeUndefined()
    expect(new AddressPolicy(['169.254.0.0/16', 'metadata']).refusal('169.254.169.254')).toBeUndefined()
    expect(() => new AddressPolicy(['10.0.0.0/33'])).toThrow(/CIDR/)
    expect(() => new AddressPolicy(['intranet'])).toThrow(/address class/)
    expect(new AddressPolicy(['link-local']).refusal('169.254.169.254')).toMatch(/metadata/)
    expect(new AddressPolicy(['link-local', 'metadata']).refusal('169.254.169.254')).toBeUndefined()
    const lookup = (host: string): Promise<unknown> => new Promise((resolve, reject) => {
      policy.lookup(host, { all: true }, (err, addresses) => err !== null ? reject(err) : resolve(addresses))
    })
    await expect(lookup('sneaky.test')).rejects.toMatchObject({ code: 'address_refused' })
    await expect(lookup('fine.test')).resolves.toEqual([{ address: '93.184.216.34', family: 4 }])
  })
})
