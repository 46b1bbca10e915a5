import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { EventServices } from '../../coordinator/events/index.ts'
import type { EventsConfigInput } from '../../coordinator/events/index.ts'
import { PgTransferStore } from '../../coordinator/store-pg.ts'
import { keys } from '../../coordinator/store-keys.ts'
import { TokenStore } from '../../coordinator/tokens.ts'
import { postgresMissing, startPostgres } from '../helpers/postgres.ts'
import type { Postgres } from '../helpers/postgres.ts'
import { transferInput } from '../coordinator/helpers.ts'
import { Receiver } from './helpers.ts'

const missing = postgresMissing()
// CI installs postgresql (.ci/run): there a missing server is a failure, not a skip.
if (missing !== undefined && process.env.CI === 'true') throw new Error(missing)

const tenant = 'default'
const owner = { tenant: '*', role: 'admin' as const }
const CONFIG: EventsConfigInput = { allow: ['loopback'], delivery: { retryScheduleMs: [200], jitter: 0, intervalMs: 50, timeoutMs: 2000, claimMs: 3000 } }

/** Bounded polling of a condition other stores (or their notifications) make true. */
async function until (what: string, check: () => boolean | Promise<boolean>, tries = 600): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`gave up waiting: ${what}`)
}

interface Replica { store: PgTransferStore, events: EventServices }

describe.skipIf(missing !== undefined)(missing === undefined ? 'replicas on one PostgreSQL: outbox, webhooks and tokens' : `replicas on one PostgreSQL (skipped: ${missing})`, () => {
  let server: Postgres
  let receiver: Receiver
  const open: Replica[] = []
  const tokenStores: TokenStore[] = []
  beforeAll(async () => {
    server = await startPostgres()
    receiver = await Receiver.start()
  }, 120_000)
  afterEach(async () => {
    for (const t of tokenStores.splice(0)) await t.close()
    for (const r of open.splice(0)) {
      await r.events.close()
      await r.store.close()
    }
    receiver.deliveries.length = 0
    receiver.mode = 'ok'
  })
  afterAll(async () => {
    await receiver?.close()
    await server?.stop()
  })

  async function replica (url: string, start = true): Promise<Replica> {
    const store = await PgTransferStore.open(url)
    const events = new EventServices(store, CONFIG)
    await events.open()
    if (start) events.start()
    const r = { store, events }
    open.push(r)
    return r
  }

  it('three replicas: a webhook registered on one reaches the others, and each event written anywhere is delivered once', async () => {
    const url = await server.freshDatabase()
    const [a, b, c] = [await replica(url), await replica(url), await replica(url)]
    const hook = await a.events.webhooks.create(owner, { url: receiver.url, topics: ['transfer.*.state'] })
    receiver.secret = hook.secret
    await until('the other replicas to know the webhook', () => b.events.webhooks.get(hook.id) !== undefined && c.events.webhooks.get(hook.id) !== undefined)
    const written: string[] = []
    const replicas = [a, b, c]
    for (let i = 0; i < 60; i++) {
      const { record } = await replicas[i % 3].store.create(transferInput('src', 'dst', `f${i}`), { tenant })
      written.push(record.id)
    }
    await receiver.until(d => new Set(d.map(x => x.id)).size >= 60, '60 deliveries')
    // Every entry removed from the outbox (delivered and settled) before counting: nothing is left to go twice.
    await until('the outbox to be empty', async () => (await a.store.readAux({ gt: 'o!', lt: 'o~' })).length === 0)
    const ids = receiver.deliveries.map(d => d.id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(ids).toHaveLength(60)
    expect(receiver.deliveries.every(d => d.verified)).toBe(true)
    expect(new Set(receiver.deliveries.map(d => d.event.topic.split('.')[1]))).toEqual(new Set(written))
  }, 120_000)

  it('replicas claiming at once never take the same entry (FOR UPDATE SKIP LOCKED), and together take them all', async () => {
    const url = await server.freshDatabase()
    const stores = [await replica(url, false), await replica(url, false), await replica(url, false)].map(r => r.store)
    const now = Date.now()
    const entries = Array.from({ length: 300 }, (_, i) => ({ type: 'put' as const, key: keys.outbox(i + 1, 'wh_x'), value: { endpoint: 'wh_x', tenant, event: { seq: i + 1 }, attempt: 0, nextAt: now } }))
    await stores[0].writeAux(entries, { sync: true })
    const claimed = await Promise.all(stores.flatMap((s, n) => Array.from({ length: 4 }, async () => await s.claimOutbox({ owner: `r${n}`, now, until: now + 60_000, limit: 40 }))))
    const all = claimed.flat().map(([key]) => key)
    expect(new Set(all).size).toBe(all.length)
    // Claimed until later: nobody gets them again before then, anyone after.
    const rest = await stores[1].claimOutbox({ owner: 'late', now, until: now + 60_000, limit: 1000 })
    expect(new Set([...all, ...rest.map(([key]) => key)]).size).toBe(300)
    expect(await stores[2].claimOutbox({ owner: 'again', now: now + 1, until: now + 60_000, limit: 1000 })).toEqual([])
    expect(await stores[2].claimOutbox({ owner: 'after', now: now + 60_001, until: now + 120_000, limit: 1000 })).toHaveLength(300)
  }, 120_000)

  it('a replica that stops delivering: its claimed entries are delivered by another once the claim lapses', async () => {
    const url = await server.freshDatabase()
    // Opened, never started: it writes (and claims) entries and never delivers them, as a replica that died after its commits.
    const silent = await replica(url, false)
    const live = await replica(url)
    const hook = await live.events.webhooks.create(owner, { url: receiver.url, topics: ['#'] })
    receiver.secret = hook.secret
    await until('the silent replica to know the webhook', () => silent.events.webhooks.get(hook.id) !== undefined)
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await silent.store.create(transferInput('src', 'dst', `g${i}`), { tenant })).record.id)
    await receiver.until(d => ids.every(id => d.some(x => x.event.topic === `transfer.${id}.state`)), 'the silent replica\'s deliveries, from the live one')
    expect(receiver.deliveries).toHaveLength(5)
  }, 120_000)

  it('a token created or revoked on one replica is known to the others without a restart', async () => {
    const url = await server.freshDatabase()
    const [a, b] = [await replica(url, false), await replica(url, false)]
    const [ta, tb] = [await TokenStore.over(a.store.tokenRecords()), await TokenStore.over(b.store.tokenRecords())]
    tokenStores.push(ta, tb)
    const { token, record } = await ta.create({ role: 'operator', tenant })
    await until('replica B to accept the new token', () => tb.authenticate(token) !== undefined)
    await ta.revoke(record.id)
    await until('replica B to refuse the revoked token', () => tb.authenticate(token) === undefined)
    expect(tb.refusal(token)).toBe('token revoked')
  }, 120_000)
})
