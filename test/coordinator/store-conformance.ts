import { afterEach, beforeEach, describe, it, expect } from 'vitest'
import { InvalidArgumentError, NotFoundError } from '../../mesh/index.ts'
import { InvalidStateError } from '../../coordinator/store.ts'
import type { CoordinatorStore } from '../../coordinator/store.ts'
import type { StoreEvent, TransferRecord } from '../../coordinator/model.ts'
import { agent, transferInput } from './helpers.ts'

const T0 = Date.parse('2025-06-01T12:00:00.000Z')
const tenant = 'default'

/** A fresh, empty store; `reopen()` closes it and opens the same storage again. */
export interface StoreHarness {
  store: CoordinatorStore
  reopen (): Promise<CoordinatorStore>
  cleanup (): Promise<void>
  /** Holds the store's next commit short of the disk (the database) until released. */
  hold (): Promise<HeldCommit>
}

export interface HeldCommit {
  /** Resolves once a commit is waiting on the hold: the writes in it have run. */
  reached: Promise<void>
  /** Lets the commit go on; a second call does nothing. */
  release (): Promise<void>
}

/**
 * The store contract (coordinator/store-contract.ts), run by every
 * implementation's test file with a factory for fresh stores. Cases about
 * how one implementation lays out its data stay in that implementation's file.
 */
export function describeStoreConformance (name: string, fresh: () => Promise<StoreHarness>): void {
  describe(`store conformance: ${name}`, () => {
    let h: StoreHarness
    beforeEach(async () => { h = await fresh() })
    afterEach(async () => { await h.cleanup() })

    describe('create', () => {
      it('stores a queued transfer with defaults and the agents it names', async () => {
        const { record, created } = await h.store.create(
          { source: 'agent://store-1/images/a.img', destination: 'null://?via=compute-2' },
          { tenant, now: T0 }
        )
        expect(created).toBe(true)
        expect(record).toMatchObject({
          tenant,
          state: 'queued',
          priority: 0,
          retries: 3,
          labels: {},
          agents: ['store-1', 'compute-2'],
          attempt: 0,
          progress: { bytesDone: 0, rate: 0 },
          createdAt: '2025-06-01T12:00:00.000Z',
          updatedAt: '2025-06-01T12:00:00.000Z'
        })
        expect(record.id).toMatch(/^tr_/)
        expect(h.store.get(record.id)).toEqual(record)
      })

      it('names the field of a bad location', async () => {
        await expect(h.store.create({ source: 'not a url', destination: 'null://' }, { tenant }))
          .rejects.toThrow(/^source: /)
        await expect(h.store.create({ source: 'random://?size=1', destination: 'agent://x' }, { tenant }))
          .rejects.toThrow(/^destination: .*volume/)
        await expect(h.store.create({ source: 'random://?size=1', destination: 'random://?size=1' }, { tenant }))
          .rejects.toBeInstanceOf(InvalidArgumentError)
      })

      it('keeps a lower-cased checksum and refuses out-of-range numbers', async () => {
        const value = 'AB'.repeat(32)
        const { record } = await h.store.create({ ...transferInput('a', 'b'), checksum: { algorithm: 'sha256', value } }, { tenant })
        expect(record.checksum).toEqual({ algorithm: 'sha256', value: value.toLowerCase() })
        await expect(h.store.create({ ...transferInput('a', 'b'), priority: 1001 }, { tenant })).rejects.toThrow(/^priority: /)
        await expect(h.store.create({ ...transferInput('a', 'b'), retries: -1 }, { tenant })).rejects.toThrow(/^retries: /)
      })


      it('returns the first transfer for a repeated idempotency key, also after a restart', async () => {
        const first = await h.store.create(transferInput('a', 'b'), { tenant, idempotencyKey: 'k1' })
        const again = await h.store.create(transferInput('a', 'c'), { tenant, idempotencyKey: 'k1' })
        expect(again).toEqual({ record: first.record, created: false })
        const store = await h.reopen()
        const afterRestart = await store.create(transferInput('a', 'b'), { tenant, idempotencyKey: 'k1' })
        expect(afterRestart).toEqual({ record: first.record, created: false })
        expect(store.size).toBe(1)
      })

      it('scopes idempotency keys to the tenant', async () => {
        const a = await h.store.create(transferInput('a', 'b'), { tenant: 't1', idempotencyKey: 'k' })
        const b = await h.store.create(transferInput('a', 'b'), { tenant: 't2', idempotencyKey: 'k' })
        expect(b.created).toBe(true)
        expect(b.record.id).not.toBe(a.record.id)
      })

      it('creates once when the same key arrives concurrently', async () => {
        const results = await Promise.all([1, 2, 3].map(() => h.store.create(transferInput('a', 'b'), { tenant, idempotencyKey: 'same' })))
        expect(results.filter(r => r.created)).toHaveLength(1)
        expect(new Set(results.map(r => r.record.id)).size).toBe(1)
      })
    })

    describe('transition', () => {
      async function queued (): Promise<TransferRecord> {
        return (await h.store.create(transferInput('a', 'b'), { tenant, now: T0 })).record
      }

      it('walks the happy path, stamping startedAt and finishedAt', async () => {
        const { id } = await queued()
        await h.store.transition(id, 'scheduled', { executor: 'b', attempt: 1 }, { now: T0 + 1000 })
        const active = await h.store.transition(id, 'active', {}, { now: T0 + 2000 })
        expect(active.startedAt).toBe('2025-06-01T12:00:02.000Z')
        await h.store.transition(id, 'verifying', {}, { now: T0 + 3000 })
        const done = await h.store.transition(id, 'succeeded', { sha256: 'ab'.repeat(32) }, { now: T0 + 4000 })
        expect(done).toMatchObject({ state: 'succeeded', executor: 'b', attempt: 1, startedAt: active.startedAt, finishedAt: '2025-06-01T12:00:04.000Z', updatedAt: '2025-06-01T12:00:04.000Z' })
        expect(h.store.inState('succeeded').map(r => r.id)).toEqual([id])
        expect(h.store.inState('queued')).toEqual([])
      })

      it('keeps the first startedAt when a retry becomes active again', async () => {
        const { id } = await queued()
        await h.store.transition(id, 'scheduled', {}, { now: T0 + 1 })
        const first = await h.store.transition(id, 'active', {}, { now: T0 + 2 })
        await h.store.transition(id, 'queued', { notBefore: T0 + 5000 }, { now: T0 + 3 })
        await h.store.transition(id, 'scheduled', {}, { now: T0 + 6000 })
        const second = await h.store.transition(id, 'active', {}, { now: T0 + 6001 })
        expect(second.startedAt).toBe(first.startedAt)
      })

      it('refuses edges the state machine does not have, changing nothing', async () => {
        const { id } = await queued()
        await expect(h.store.transition(id, 'active')).rejects.toBeInstanceOf(InvalidStateError)
        await expect(h.store.transition(id, 'succeeded')).rejects.toThrow(/cannot go from queued to succeeded/)
        await h.store.transition(id, 'canceled')
        await expect(h.store.transition(id, 'queued')).rejects.toMatchObject({ code: 'invalid_state' })
        expect(h.store.get(id)?.state).toBe('canceled')
        expect(h.store.seq).toBe(2)
      })

      it('checks opts.from against the current state', async () => {
        const { id } = await queued()
        await expect(h.store.transition(id, 'canceled', {}, { from: ['active'] })).rejects.toThrow(/is queued, not active/)
        await expect(h.store.transition(id, 'canceled', {}, { from: ['queued'] })).resolves.toMatchObject({ state: 'canceled' })
      })

      it('throws NotFoundError for an unknown id', async () => {
        await expect(h.store.transition('tr_00000000000000000000000000', 'scheduled')).rejects.toBeInstanceOf(NotFoundError)
      })

      it('does not let a patch change identity fields', async () => {
        const rec = await queued()
        const next = await h.store.transition(rec.id, 'scheduled', { id: 'tr_x', tenant: 'evil', state: 'succeeded', createdAt: 'x', executor: 'b' })
        expect(next).toMatchObject({ id: rec.id, tenant, state: 'scheduled', createdAt: rec.createdAt, executor: 'b' })
      })

      it('lets only one of two racing transitions from the same state win', async () => {
        const { id } = await queued()
        const results = await Promise.allSettled([
          h.store.transition(id, 'scheduled', {}, { from: ['queued'] }),
          h.store.transition(id, 'canceled', {}, { from: ['queued'] })
        ])
        expect(results.map(r => r.status)).toEqual(['fulfilled', 'rejected'])
        expect(h.store.get(id)?.state).toBe('scheduled')
      })

      it('writes record, index and event in one batch, and they agree after a reopen', async () => {
        const { id } = await queued()
        const error = { code: 'network', message: 'reset', retryable: true, at: new Date(T0).toISOString(), attempt: 1 }
        await h.store.transition(id, 'scheduled', { attempt: 1 }, { now: T0 + 1 })
        await h.store.transition(id, 'active', {}, { now: T0 + 2 })
        await h.store.transition(id, 'queued', { lastError: error, notBefore: T0 + 10_000 }, { now: T0 + 3 })
        const store = await h.reopen()
        const rec = store.get(id)
        expect(rec).toMatchObject({ state: 'queued', attempt: 1, lastError: error, notBefore: T0 + 10_000 })
        expect(store.queuedInOrder().map(r => r.id)).toEqual([id])
        const events = await store.readEvents(0, 100)
        expect(events.map(e => [e.seq, e.data.from, e.data.to])).toEqual([
          [1, null, 'queued'], [2, 'queued', 'scheduled'], [3, 'scheduled', 'active'], [4, 'active', 'queued']
        ])
        expect(events[3].data).toEqual({ from: 'active', to: 'queued', attempt: 1, error })
        expect(events.every(e => e.topic === `transfer.${id}.state` && e.tenant === tenant)).toBe(true)
        expect(new Set(events.map(e => e.id)).size).toBe(4)
      })

      it('emits transition after the write, with the previous state', async () => {
        const { id } = await queued()
        const seen: Array<[string, string]> = []
        h.store.on('transition', (rec, from) => { seen.push([from, rec.state]) })
        await h.store.transition(id, 'scheduled')
        expect(seen).toEqual([['queued', 'scheduled']])
      })
    })

    describe('sequence numbers', () => {
      it('continue from the highest seq after a restart', async () => {
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant })
        await h.store.transition(record.id, 'canceled')
        const store = await h.reopen()
        expect(store.seq).toBe(2)
        await store.create(transferInput('a', 'c'), { tenant })
        const events = await store.readEvents(0, 10)
        expect(events.map(e => e.seq)).toEqual([1, 2, 3])
      })

      it('page through events with after and limit', async () => {
        for (let i = 0; i < 5; i++) await h.store.create(transferInput('a', 'b', `${i}.img`), { tenant })
        expect((await h.store.readEvents(2, 2)).map(e => e.seq)).toEqual([3, 4])
        expect((await h.store.readEvents(5, 10))).toEqual([])
      })
    })

    describe('restart', () => {
      it('reloads transfers, state sets, queue order and agents', async () => {
        await h.store.putAgent(agent('a'))
        const ids: string[] = []
        for (let i = 0; i < 5; i++) ids.push((await h.store.create({ ...transferInput('a', 'b', `${i}.img`), priority: i % 2 }, { tenant })).record.id)
        await h.store.transition(ids[0], 'scheduled')
        await h.store.transition(ids[1], 'canceled')
        const before = { queue: h.store.queuedInOrder(), scheduled: h.store.inState('scheduled'), list: h.store.list({ limit: 10 }) }
        const store = await h.reopen()
        expect(store.queuedInOrder()).toEqual(before.queue)
        expect(store.queuedInOrder().map(r => r.id)).toEqual([ids[3], ids[2], ids[4]])
        expect(store.inState('scheduled')).toEqual(before.scheduled)
        expect(store.list({ limit: 10 })).toEqual(before.list)
        expect(store.getAgent('a')).toEqual(agent('a'))
      })

      it('gives new ids that sort after the reloaded ones', async () => {
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant, now: Date.now() + 3_600_000 })
        const store = await h.reopen()
        const next = await store.create(transferInput('a', 'c'), { tenant })
        expect(next.record.id > record.id).toBe(true)
      })
    })

    describe('list', () => {
      it('pages in id order with a cursor', async () => {
        const ids: string[] = []
        for (let i = 0; i < 7; i++) ids.push((await h.store.create(transferInput('a', 'b', `${i}.img`), { tenant })).record.id)
        const p1 = h.store.list({ limit: 3 })
        expect(p1.items.map(r => r.id)).toEqual(ids.slice(0, 3))
        expect(p1.next).toBe(ids[2])
        const p2 = h.store.list({ limit: 3, after: p1.next })
        expect(p2.items.map(r => r.id)).toEqual(ids.slice(3, 6))
        const p3 = h.store.list({ limit: 3, after: p2.next })
        expect(p3.items.map(r => r.id)).toEqual(ids.slice(6))
        expect(p3.next).toBeUndefined()
        // Exactly a page's worth left: no cursor to an empty page.
        expect(h.store.list({ limit: 7 }).next).toBeUndefined()
      })

      it('filters by tenant, state, agent and label, with cursors over the filtered set', async () => {
        const make = async (from: string, to: string, t: string, labels: Record<string, string> = {}): Promise<string> =>
          (await h.store.create({ ...transferInput(from, to), labels }, { tenant: t })).record.id
        const a = await make('s1', 'd1', 'x', { team: 'red' })
        const b = await make('s1', 'd2', 'x', { team: 'blue' })
        const c = await make('s2', 'd1', 'y', { team: 'red' })
        const d = await make('s2', 'd2', 'x', { team: 'red' })
        await h.store.transition(b, 'canceled')
        const ids = (q: Parameters<CoordinatorStore['list']>[0]): string[] => h.store.list(q).items.map(r => r.id)
        expect(ids({ tenant: 'x', limit: 10 })).toEqual([a, b, d])
        expect(ids({ state: 'canceled', limit: 10 })).toEqual([b])
        expect(ids({ state: 'queued', limit: 10 })).toEqual([a, c, d])
        expect(ids({ agent: 'd1', limit: 10 })).toEqual([a, c])
        expect(ids({ label: { key: 'team', value: 'red' }, tenant: 'x', limit: 10 })).toEqual([a, d])
        const first = h.store.list({ label: { key: 'team', value: 'red' }, limit: 1 })
        expect(first).toEqual({ items: [h.store.get(a)], next: a })
        expect(ids({ label: { key: 'team', value: 'red' }, limit: 5, after: first.next })).toEqual([c, d])
      })

      it('uses the state set for small states and still returns id order', async () => {
        const ids: string[] = []
        for (let i = 0; i < 40; i++) ids.push((await h.store.create(transferInput('a', 'b', `${i}.img`), { tenant })).record.id)
        for (const i of [30, 5, 17]) await h.store.transition(ids[i], 'scheduled')
        expect(h.store.list({ state: 'scheduled', limit: 10 }).items.map(r => r.id)).toEqual([ids[5], ids[17], ids[30]])
        expect(h.store.list({ state: 'scheduled', limit: 1, after: ids[5] })).toEqual({ items: [h.store.get(ids[17])], next: ids[17] })
      })

      it('pages newest first with order desc, over all ids and over a small state set', async () => {
        const ids: string[] = []
        for (let i = 0; i < 40; i++) ids.push((await h.store.create(transferInput('a', 'b', `${i}.img`), { tenant })).record.id)
        const newest = [...ids].reverse()
        const p1 = h.store.list({ limit: 15, order: 'desc' })
        expect(p1.items.map(r => r.id)).toEqual(newest.slice(0, 15))
        const p2 = h.store.list({ limit: 15, order: 'desc', after: p1.next })
        expect(p2.items.map(r => r.id)).toEqual(newest.slice(15, 30))
        const p3 = h.store.list({ limit: 15, order: 'desc', after: p2.next })
        expect(p3.items.map(r => r.id)).toEqual(newest.slice(30))
        expect(p3.next).toBeUndefined()
        for (const i of [30, 5, 17]) await h.store.transition(ids[i], 'scheduled')
        expect(h.store.list({ state: 'scheduled', limit: 2, order: 'desc' })).toEqual({ items: [h.store.get(ids[30]), h.store.get(ids[17])], next: ids[17] })
        expect(h.store.list({ state: 'scheduled', limit: 2, order: 'desc', after: ids[17] }).items.map(r => r.id)).toEqual([ids[5]])
      })
    })

    describe('queuedInOrder', () => {
      it('orders by priority, then creation; follows re-queues and includes notBefore', async () => {
        const mk = async (priority: number): Promise<string> => (await h.store.create({ ...transferInput('a', 'b'), priority }, { tenant })).record.id
        const low = await mk(-5)
        const mid1 = await mk(0)
        const high = await mk(10)
        const mid2 = await mk(0)
        expect(h.store.queuedInOrder().map(r => r.id)).toEqual([high, mid1, mid2, low])
        await h.store.transition(mid1, 'scheduled')
        expect(h.store.queuedInOrder().map(r => r.id)).toEqual([high, mid2, low])
        await h.store.transition(mid1, 'queued', { notBefore: Date.now() + 60_000 })
        expect(h.store.queuedInOrder().map(r => r.id)).toEqual([high, mid1, mid2, low])
        await h.store.setProgress(mid1, { bytesDone: 10 })
        expect(h.store.queuedInOrder().find(r => r.id === mid1)?.progress.bytesDone).toBe(10)
      })
    })

    describe('progress', () => {
      async function active (): Promise<string> {
        const { id } = (await h.store.create(transferInput('a', 'b'), { tenant, now: T0 })).record
        await h.store.transition(id, 'scheduled', {}, { now: T0 })
        await h.store.transition(id, 'active', {}, { now: T0 })
        return id
      }

      it('computes a rate from reports and an eta from the total', async () => {
        const id = await active()
        const seen: number[] = []
        h.store.on('progress', rec => seen.push(rec.progress.bytesDone))
        await h.store.setProgress(id, { bytesDone: 1_000_000, bytesTotal: 10_000_000 }, { now: T0 + 1000 })
        let p = h.store.get(id)?.progress
        expect(p).toMatchObject({ bytesDone: 1_000_000, bytesTotal: 10_000_000, rate: 1_000_000, eta: 9 })
        await h.store.setProgress(id, { bytesDone: 2_000_000 }, { now: T0 + 2000 })
        p = h.store.get(id)?.progress
        expect(p).toMatchObject({ bytesDone: 2_000_000, bytesTotal: 10_000_000, rate: 1_000_000, eta: 8 })
        expect(seen).toEqual([1_000_000, 2_000_000])
      })

      it('smooths a sudden change in rate rather than jumping to it', async () => {
        const id = await active()
        await h.store.setProgress(id, { bytesDone: 1000 }, { now: T0 + 1000 })
        await h.store.setProgress(id, { bytesDone: 4000 }, { now: T0 + 2000 })
        const rate = h.store.get(id)?.progress.rate ?? 0
        expect(rate).toBeGreaterThan(1000)
        expect(rate).toBeLessThan(3000)
      })

      it('starts a new attempt with a fresh rate but keeps the bytes', async () => {
        const id = await active()
        await h.store.setProgress(id, { bytesDone: 5000, bytesTotal: 10_000 }, { now: T0 + 1000 })
        await h.store.transition(id, 'queued', {}, { now: T0 + 2000 })
        expect(h.store.get(id)?.progress).toEqual({ bytesDone: 5000, bytesTotal: 10_000, rate: 0, updatedAt: new Date(T0 + 2000).toISOString() })
        await h.store.transition(id, 'scheduled', {}, { now: T0 + 60_000 })
        await h.store.transition(id, 'active', {}, { now: T0 + 61_000 })
        await h.store.setProgress(id, { bytesDone: 6000 }, { now: T0 + 62_000 })
        expect(h.store.get(id)?.progress).toMatchObject({ rate: 1000, eta: 4 })
      })

      it('resets the rate when the bytes go back (restart from zero)', async () => {
        const id = await active()
        await h.store.setProgress(id, { bytesDone: 5000 }, { now: T0 + 1000 })
        await h.store.setProgress(id, { bytesDone: 0 }, { now: T0 + 2000 })
        expect(h.store.get(id)?.progress).toMatchObject({ bytesDone: 0, rate: 0 })
      })

      it('is ignored once the transfer is finished, and survives a restart otherwise', async () => {
        const id = await active()
        await h.store.setProgress(id, { bytesDone: 700 }, { now: T0 + 1000 })
        const other = await active()
        await h.store.transition(other, 'canceled')
        await h.store.setProgress(other, { bytesDone: 99 }, { now: T0 + 1000 })
        expect(h.store.get(other)?.progress.bytesDone).toBe(0)
        const store = await h.reopen()
        expect(store.get(id)?.progress.bytesDone).toBe(700)
      })

      it('refuses negative byte counts and unknown transfers', async () => {
        const id = await active()
        await expect(h.store.setProgress(id, { bytesDone: -1 })).rejects.toBeInstanceOf(InvalidArgumentError)
        await expect(h.store.setProgress('tr_00000000000000000000000000', { bytesDone: 1 })).rejects.toBeInstanceOf(NotFoundError)
      })
    })

    describe('remove', () => {
      it('deletes finished transfers only, with an event, and frees the idempotency key', async () => {
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant, idempotencyKey: 'k' })
        await expect(h.store.remove(record.id)).rejects.toBeInstanceOf(InvalidStateError)
        await h.store.transition(record.id, 'canceled')
        await h.store.remove(record.id)
        expect(h.store.get(record.id)).toBeUndefined()
        expect(h.store.list({ limit: 10 }).items).toEqual([])
        const events = await h.store.readEvents(2, 10)
        expect(events).toMatchObject([{ seq: 3, topic: `transfer.${record.id}.deleted`, data: { state: 'canceled' } }])
        const store = await h.reopen()
        expect(store.get(record.id)).toBeUndefined()
        const again = await store.create(transferInput('a', 'b'), { tenant, idempotencyKey: 'k' })
        expect(again.created).toBe(true)
      })
    })

    describe('tree files', () => {
      it('pages a tree\'s files by path, filters by state, keeps a later report of a path, and survives a restart', async () => {
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant })
        const error = { code: 'not_found', message: 'gone', retryable: false }
        await h.store.putTreeFiles(record.id, [
          { path: 'b/2.txt', state: 'done', size: 2 },
          { path: 'a!1.txt', state: 'failed', size: 1, error },
          { path: 'c\nü.bin', state: 'skipped', size: 0, reason: 'symbolic link (not followed)' },
          { path: 'd', state: 'failed', size: 4, error }
        ])
        await h.store.putTreeFiles(record.id, [{ path: 'd', state: 'done', size: 4 }])
        const first = await h.store.listTreeFiles(record.id, { limit: 2 })
        expect(first.items).toEqual([{ path: 'a!1.txt', state: 'failed', size: 1, error }, { path: 'b/2.txt', state: 'done', size: 2 }])
        expect(first.next).toBe('b/2.txt')
        const second = await h.store.listTreeFiles(record.id, { limit: 2, after: first.next })
        expect(second.items).toEqual([{ path: 'c\nü.bin', state: 'skipped', size: 0, reason: 'symbolic link (not followed)' }, { path: 'd', state: 'done', size: 4 }])
        expect((await h.store.listTreeFiles(record.id, { limit: 10, after: 'd' })).items).toEqual([])
        const store = await h.reopen()
        expect((await store.listTreeFiles(record.id, { limit: 10, state: 'failed' })).items.map(r => r.path)).toEqual(['a!1.txt'])
        expect((await store.listTreeFiles(record.id, { limit: 10, state: 'done' })).items.map(r => r.path)).toEqual(['b/2.txt', 'd'])
      })

      it('keeps the latest report of a path across listings, restarts and many reports', async () => {
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant })
        const error = { code: 'not_found', message: 'gone', retryable: false }
        await h.store.putTreeFiles(record.id, [{ path: 'x', state: 'failed', size: 1, error }, { path: 'y', state: 'done', size: 2 }])
        let store = await h.reopen()
        await store.putTreeFiles(record.id, [{ path: 'x', state: 'done', size: 1 }])
        expect((await store.listTreeFiles(record.id, { limit: 10 })).items).toEqual([{ path: 'x', state: 'done', size: 1 }, { path: 'y', state: 'done', size: 2 }])
        await store.putTreeFiles(record.id, [{ path: 'y', state: 'failed', size: 2, error }])
        store = await h.reopen()
        await store.putTreeFiles(record.id, [{ path: 'z', state: 'skipped', size: 0, reason: 'socket' }])
        expect((await store.listTreeFiles(record.id, { limit: 10, state: 'failed' })).items).toEqual([{ path: 'y', state: 'failed', size: 2, error }])
        // More reports than one listing spreads at a time, each path reported again and again: the last report wins.
        for (let i = 0; i < 150; i++) await store.putTreeFiles(record.id, [{ path: `p${i % 7}`, state: i % 2 === 0 ? 'done' : 'failed', size: i, ...(i % 2 === 0 ? {} : { error }) }])
        const all = await store.listTreeFiles(record.id, { limit: 20 })
        expect(all.items.map(r => [r.path, r.state, r.size])).toEqual([
          ['p0', 'failed', 147], ['p1', 'done', 148], ['p2', 'failed', 149], ['p3', 'failed', 143], ['p4', 'done', 144], ['p5', 'failed', 145], ['p6', 'done', 146],
          ['x', 'done', 1], ['y', 'failed', 2], ['z', 'skipped', 0]
        ])
      })

      it('keeps one transfer\'s files apart from another\'s, and removes them with their transfer', async () => {
        const one = (await store().create(transferInput('a', 'b'), { tenant })).record
        const two = (await store().create(transferInput('a', 'b'), { tenant })).record
        await store().putTreeFiles(one.id, [{ path: 'x', state: 'done', size: 1 }])
        await store().putTreeFiles(two.id, [{ path: 'y', state: 'done', size: 1 }])
        expect((await store().listTreeFiles(one.id, { limit: 10 })).items.map(r => r.path)).toEqual(['x'])
        await store().transition(one.id, 'canceled')
        await store().remove(one.id)
        expect((await store().listTreeFiles(one.id, { limit: 10 })).items).toEqual([])
        expect((await store().listTreeFiles(two.id, { limit: 10 })).items.map(r => r.path)).toEqual(['y'])
        await expect(store().putTreeFiles(one.id, [{ path: 'x', state: 'done', size: 1 }])).rejects.toBeInstanceOf(NotFoundError)
      })
      it('keeps a mirror\'s and a dry run\'s states, filtered like the others', async () => {
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant })
        await h.store.putTreeFiles(record.id, [
          { path: 'gone', state: 'deleted', size: 3 },
          { path: 'new', state: 'would-copy', size: 5 },
          { path: 'old', state: 'would-delete', size: 7 }
        ])
        expect((await h.store.listTreeFiles(record.id, { limit: 10, state: 'would-delete' })).items).toEqual([{ path: 'old', state: 'would-delete', size: 7 }])
        expect((await h.store.listTreeFiles(record.id, { limit: 10 })).items.map(r => r.state)).toEqual(['deleted', 'would-copy', 'would-delete'])
      })
      const store = (): CoordinatorStore => h.store
    })

    describe('agents', () => {
      it('stores agents, and logs an event only when online flips', async () => {
        const seen: boolean[] = []
        h.store.on('agent', rec => seen.push(rec.online))
        await h.store.putAgent(agent('b'))
        await h.store.putAgent({ ...agent('b'), lastSeenAt: '2025-01-02T00:00:00.000Z' })
        await h.store.putAgent(agent('a', false))
        await h.store.putAgent(agent('b', false))
        expect(seen).toEqual([true, true, false, false])
        expect(h.store.listAgents().map(a => a.name)).toEqual(['a', 'b'])
        const events = await h.store.readEvents(0, 10)
        expect(events.map(e => [e.topic, e.tenant, e.data.online])).toEqual([
          ['agent.b.online', '*', true],
          ['agent.b.online', '*', false]
        ])
        const store = await h.reopen()
        expect(store.getAgent('b')).toMatchObject({ online: false })
        expect(store.getAgent('nobody')).toBeUndefined()
      })

      it('refuses invalid agent names', async () => {
        await expect(h.store.putAgent(agent('bad name'))).rejects.toBeInstanceOf(InvalidArgumentError)
      })
    })

    it('refuses writes after close', async () => {
      await h.store.close()
      await expect(h.store.create(transferInput('a', 'b'), { tenant })).rejects.toMatchObject({ code: 'unavailable' })
      await h.reopen()
    })
    describe('event log', () => {
      it('announces each event once its write has ended, in seq order', async () => {
        const seen: StoreEvent[] = []
        const onEvent = (ev: StoreEvent): void => { seen.push(ev) }
        h.store.on('event', onEvent)
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant })
        expect(seen.map(e => e.seq)).toEqual([1])
        await Promise.all([h.store.transition(record.id, 'scheduled'), h.store.appendEvent(`transfer.${record.id}.stalled`, tenant, { seconds: 1 }, { record })])
        expect(seen.map(e => e.seq)).toEqual([1, 2, 3])
        expect(seen).toEqual(await h.store.readEvents(0, 10))
        h.store.off('event', onEvent)
      })

      it('trims the oldest events in bounded steps and remembers how far, across a restart', async () => {
        for (let i = 0; i < 6; i++) await h.store.appendEvent(`agent.a${i}.online`, '*', { online: true })
        expect(await h.store.trimEvents(4, 3)).toBe(3)
        expect(await h.store.trimEvents(4, 3)).toBe(4)
        expect(h.store.trimmedThrough).toBe(4)
        const store = await h.reopen()
        expect(store.trimmedThrough).toBe(4)
        expect((await store.readEvents(0, 10)).map(e => e.seq)).toEqual([5, 6])
        // Trimming past the last event stops at it.
        expect(await store.trimEvents(100, 10)).toBe(6)
        const next = await store.appendEvent('agent.z.online', '*', { online: true })
        expect(next.seq).toBeGreaterThan(6)
      })

      it('keeps seqs strictly increasing under concurrent writes', async () => {
        const created = await Promise.all(Array.from({ length: 10 }, (_, i) => h.store.create(transferInput('a', 'b', `${i}.img`), { tenant })))
        await Promise.all(created.map(({ record }) => h.store.transition(record.id, 'canceled')))
        const seqs = (await h.store.readEvents(0, 100)).map(e => e.seq)
        expect(seqs).toHaveLength(20)
        for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1])
        expect(h.store.seq).toBe(seqs[seqs.length - 1])
      })
    })

    describe('aux area', () => {
      it('reads ranges in key byte order, reversed and limited, across a restart', async () => {
        let written = false
        await h.store.writeAux([
          { type: 'put', key: 'd!hook_1!b', value: { n: 2 } },
          { type: 'put', key: 'd!hook_1!a', value: { n: 1 } },
          { type: 'put', key: 'd!hook_1!B', value: 'upper' },
          { type: 'put', key: 'd!hook_10!a', value: [1, 2] },
          { type: 'put', key: 'w!hook_1', value: { url: 'http://127.0.0.1/' } }
        ], { sync: true, onWritten: () => { written = true } })
        expect(written).toBe(true)
        const keys = async (store: CoordinatorStore, r: Parameters<CoordinatorStore['readAux']>[0]): Promise<string[]> => (await store.readAux(r)).map(([k]) => k)
        expect(await keys(h.store, { gt: 'd!hook_1!', lt: 'd!hook_1!~' })).toEqual(['d!hook_1!B', 'd!hook_1!a', 'd!hook_1!b'])
        expect(await keys(h.store, { gt: 'd!hook_1!', lt: 'd!hook_1!~', reverse: true, limit: 2 })).toEqual(['d!hook_1!b', 'd!hook_1!a'])
        await h.store.writeAux([{ type: 'del', key: 'd!hook_1!a' }], { sync: false })
        const store = await h.reopen()
        expect(await store.readAux({ gt: 'd!', lt: 'd~' })).toEqual([['d!hook_1!B', 'upper'], ['d!hook_1!b', { n: 2 }], ['d!hook_10!a', [1, 2]]])
        expect(await store.readAux({ gt: 'w!', lt: 'w~' })).toEqual([['w!hook_1', { url: 'http://127.0.0.1/' }]])
      })

      it('refuses keys outside the aux ranges', async () => {
        // Thrown or rejected: either way the caller's await fails.
        await expect((async () => { await h.store.writeAux([{ type: 'put', key: 't!x', value: 1 }], { sync: true }) })()).rejects.toBeInstanceOf(TypeError)
        await expect((async () => await h.store.readAux({ gt: 't!', lt: 't~' }))()).rejects.toBeInstanceOf(TypeError)
      })

      it('writes the fan-out of every event with it, and only of committed events', async () => {
        h.store.setFanout((event, record) => [{ key: `o!${String(event.seq).padStart(16, '0')}!hook`, value: { topic: event.topic, id: record?.id ?? null } }])
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant })
        await expect(h.store.transition(record.id, 'active')).rejects.toBeInstanceOf(InvalidStateError)
        await h.store.putAgent(agent('a'))
        h.store.setFanout(undefined)
        await h.store.transition(record.id, 'canceled')
        const store = await h.reopen()
        expect(await store.readAux({ gt: 'o!', lt: 'o~' })).toEqual([
          [`o!${'1'.padStart(16, '0')}!hook`, { topic: `transfer.${record.id}.state`, id: record.id }],
          [`o!${'2'.padStart(16, '0')}!hook`, { topic: 'agent.a.online', id: null }]
        ])
      })
    })

    describe('a write that fails midway', () => {
      it('writes nothing of itself, and the writes queued around it commit', async () => {
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant })
        h.store.setFanout(event => {
          // Fails after the event is built (in PostgreSQL: after its row is inserted).
          if (event.topic.endsWith('.stalled')) throw new Error('fan-out failed')
          return []
        })
        const results = await Promise.allSettled([
          h.store.transition(record.id, 'scheduled'),
          h.store.appendEvent(`transfer.${record.id}.stalled`, tenant, {}, { record }),
          h.store.transition(record.id, 'active'),
          h.store.putAgent(agent('a'))
        ])
        h.store.setFanout(undefined)
        expect(results.map(r => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled'])
        const store = await h.reopen()
        const events = await store.readEvents(0, 10)
        expect(events.map(e => e.topic)).toEqual([`transfer.${record.id}.state`, `transfer.${record.id}.state`, `transfer.${record.id}.state`, 'agent.a.online'])
        for (let i = 1; i < events.length; i++) expect(events[i].seq).toBeGreaterThan(events[i - 1].seq)
        expect(store.get(record.id)?.state).toBe('active')
        expect(store.getAgent('a')).toEqual(agent('a'))
      })
    })

    describe('update', () => {
      it('changes a record without its state, with an event, and writes nothing when the change declines', async () => {
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant })
        const waiting = { reason: 'agent_offline' as const, agent: 'b', since: new Date(T0).toISOString() }
        const next = await h.store.update(record.id, () => ({ waiting }), `transfer.${record.id}.waiting`, { reason: 'agent_offline' })
        expect(next?.waiting).toEqual(waiting)
        expect(await h.store.update(record.id, () => undefined, 'never', {})).toBeUndefined()
        const store = await h.reopen()
        expect(store.get(record.id)?.waiting).toEqual(waiting)
        expect((await store.readEvents(0, 10)).map(e => e.topic)).toEqual([`transfer.${record.id}.state`, `transfer.${record.id}.waiting`])
      })
    })

    describe('what readers see while a commit is on its way', () => {
      /** Runs `fn` with a commit held, and releases it even when `fn` fails (a held store never closes). */
      async function holding (fn: (held: HeldCommit) => Promise<void>): Promise<void> {
        const held = await h.hold()
        try {
          await fn(held)
        } finally {
          await held.release()
        }
      }

      it('a transition: the previous state everywhere until it has committed, while the next write builds on it', async () => {
        const { record } = await h.store.create(transferInput('a', 'b'), { tenant })
        const seen: string[] = []
        h.store.on('transition', rec => { seen.push(rec.state) })
        let scheduled: Promise<TransferRecord> | undefined
        let active: Promise<TransferRecord> | undefined
        await holding(async held => {
          scheduled = h.store.transition(record.id, 'scheduled', { executor: 'b', attempt: 1 }, { from: ['queued'] })
          await held.reached
          // A crash now would take the change back: no reader may see it.
          expect(h.store.get(record.id)?.state).toBe('queued')
          expect(h.store.inState('scheduled')).toEqual([])
          expect(h.store.countInState('queued')).toBe(1)
          expect(h.store.queuedInOrder().map(r => r.id)).toEqual([record.id])
          expect(h.store.list({ limit: 10 }).items.map(r => r.state)).toEqual(['queued'])
          expect(h.store.list({ state: 'scheduled', limit: 10 }).items).toEqual([])
          expect(seen).toEqual([])
          // A write checks the state the writes before it left, committed or not.
          active = h.store.transition(record.id, 'active', {}, { from: ['scheduled'] })
        })
        await scheduled
        await active
        expect(h.store.get(record.id)?.state).toBe('active')
        expect(h.store.inState('active').map(r => r.id)).toEqual([record.id])
        expect(seen).toEqual(['scheduled', 'active'])
      })

      it('a new transfer and a removed one: not listed, and still listed, until committed', async () => {
        const { record: first } = await h.store.create(transferInput('a', 'b'), { tenant })
        let second: Promise<{ record: TransferRecord }> | undefined
        await holding(async held => {
          second = h.store.create(transferInput('a', 'c'), { tenant })
          await held.reached
          expect(h.store.size).toBe(1)
          expect(h.store.list({ limit: 10 }).items.map(r => r.id)).toEqual([first.id])
        })
        const { record } = await (second as Promise<{ record: TransferRecord }>)
        expect(h.store.get(record.id)?.state).toBe('queued')
        expect(h.store.size).toBe(2)
        await h.store.transition(first.id, 'canceled')
        let removed: Promise<void> | undefined
        await holding(async held => {
          removed = h.store.remove(first.id)
          await held.reached
          expect(h.store.get(first.id)?.state).toBe('canceled')
          expect(h.store.inState('canceled').map(r => r.id)).toEqual([first.id])
        })
        await removed
        expect(h.store.get(first.id)).toBeUndefined()
        expect(h.store.size).toBe(1)
      })

      it('an agent: as it was until committed', async () => {
        await h.store.putAgent(agent('a', false))
        let online: Promise<void> | undefined
        await holding(async held => {
          online = h.store.putAgent(agent('a', true))
          await held.reached
          expect(h.store.getAgent('a')?.online).toBe(false)
          expect(h.store.listAgents().map(a => a.online)).toEqual([false])
        })
        await online
        expect(h.store.getAgent('a')?.online).toBe(true)
      })
    })
  })
}
