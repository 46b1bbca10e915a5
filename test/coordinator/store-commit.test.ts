import { afterEach, beforeEach, describe, it, expect } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { GroupCommit } from '../../coordinator/store-commit.ts'
import { tempStore, transferInput } from './helpers.ts'

type Op = { type: 'put', key: string, value: unknown } | { type: 'del', key: string }

/** A LevelDB whose batches finish only when the test says so. */
function heldDb (): { db: Level<string, unknown>, batches: Array<{ ops: Op[], sync: boolean, finish: (err?: Error) => void }> } {
  const batches: Array<{ ops: Op[], sync: boolean, finish: (err?: Error) => void }> = []
  const db = {
    async batch (ops: Op[], opts: { sync: boolean }) {
      await new Promise<void>((resolve, reject) => batches.push({ ops, sync: opts.sync, finish: err => err === undefined ? resolve() : reject(err) }))
    },
    async get () { return undefined }
  }
  return { db: db as unknown as Level<string, unknown>, batches }
}

const flush = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

describe('group commit', () => {
  it('writes what queued up behind a batch as one batch, synced if any write asked', async () => {
    const { db, batches } = heldDb()
    const gc = new GroupCommit(db)
    gc.write([{ type: 'put', key: 'a', value: 1 }], true)
    const first = gc.ticket()
    gc.write([{ type: 'put', key: 'b', value: 2 }], false)
    gc.write([{ type: 'del', key: 'a' }], true)
    const second = gc.ticket()
    expect(batches).toHaveLength(1)
    let firstDone = false
    let secondDone = false
    void gc.durable(first).then(() => { firstDone = true })
    void gc.durable(second).then(() => { secondDone = true })
    await flush()
    expect(firstDone).toBe(false)
    batches[0].finish()
    await flush()
    expect(firstDone).toBe(true)
    expect(secondDone).toBe(false)
    expect(batches).toHaveLength(2)
    expect(batches[1]).toMatchObject({ ops: [{ type: 'put', key: 'b', value: 2 }, { type: 'del', key: 'a' }], sync: true })
    batches[1].finish()
    await flush()
    expect(secondDone).toBe(true)
  })

  it('lets a read see a write that is not on disk yet, as a copy', async () => {
    const { db, batches } = heldDb()
    const gc = new GroupCommit(db)
    const value = { n: 1 }
    gc.write([{ type: 'put', key: 'k', value }], true)
    const got = await gc.get('k')
    expect(got).toEqual({ n: 1 })
    expect(got).not.toBe(value)
    gc.write([{ type: 'del', key: 'k' }], true)
    expect(await gc.get('k')).toBeUndefined()
    batches[0].finish()
  })

  it('fails the writes of a failed batch and every write after it', async () => {
    const { db, batches } = heldDb()
    const gc = new GroupCommit(db)
    gc.write([{ type: 'put', key: 'a', value: 1 }], true)
    const first = gc.durable(gc.ticket())
    gc.write([{ type: 'put', key: 'b', value: 1 }], true)
    const second = gc.durable(gc.ticket())
    batches[0].finish(new Error('EIO'))
    await expect(first).rejects.toMatchObject({ code: 'unavailable' })
    await expect(second).rejects.toMatchObject({ code: 'unavailable' })
    expect(() => gc.write([{ type: 'put', key: 'c', value: 1 }], true)).toThrow(/could not write to disk/)
    expect(batches).toHaveLength(1)
  })

  describe('on LevelDB', () => {
    let dir: string
    beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'staccato-commit-')) })
    afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

    it('makes many writes durable with fewer batches, in order', async () => {
      const db = new Level<string, unknown>(dir, { valueEncoding: 'json' })
      await db.open()
      let calls = 0
      const batch = db.batch.bind(db) as (ops: Op[], o: { sync: boolean }) => Promise<void>
      Object.assign(db, { batch: async (ops: Op[], o: { sync: boolean }) => { calls++; await batch(ops, o) } })
      const gc = new GroupCommit(db)
      const view = gc.view()
      const done: Array<Promise<void>> = []
      for (let i = 0; i < 100; i++) {
        await view.batch([{ type: 'put', key: `k${String(i).padStart(3, '0')}`, value: i }, { type: 'put', key: 'last', value: i }], { sync: true })
        done.push(gc.durable(gc.ticket()))
      }
      await Promise.all(done)
      expect(calls).toBeLessThan(100)
      // A range read waits for the writes before it.
      expect(await view.values({ gt: 'k', lt: 'l' }).all()).toHaveLength(100)
      await view.close()
      const again = new Level<string, unknown>(dir, { valueEncoding: 'json' })
      expect(await again.get('last')).toBe(99)
      await again.close()
    })
  })
})

describe('TransferStore with group commit', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  beforeEach(async () => { h = await tempStore() })
  afterEach(async () => { await h.cleanup() })

  it('keeps every concurrent create, with a gap-free event log, across a reopen', async () => {
    const created: string[] = []
    h.store.on('created', rec => created.push(rec.id))
    const records = await Promise.all(Array.from({ length: 200 }, async (_, i) => (await h.store.create(transferInput('store-1', 'compute-1', `f${i}.img`), { tenant: 'default' })).record))
    expect(new Set(records.map(r => r.id)).size).toBe(200)
    expect(created).toEqual(records.map(r => r.id))
    const store = await h.reopen()
    expect(store.countInState('queued')).toBe(200)
    const events = await store.readEvents(0, 1000)
    expect(events.map(e => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1))
  })

  it('finds an idempotency key written by a create whose batch is still on its way', async () => {
    const [a, b] = await Promise.all([
      h.store.create(transferInput('store-1', 'compute-1'), { tenant: 'default', idempotencyKey: 'same' }),
      h.store.create(transferInput('store-1', 'compute-1'), { tenant: 'default', idempotencyKey: 'same' })
    ])
    expect(a.created).toBe(true)
    expect(b.created).toBe(false)
    expect(b.record.id).toBe(a.record.id)
  })
})
