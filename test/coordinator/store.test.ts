import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, it, expect } from 'vitest'
import { TransferStore } from '../../coordinator/store.ts'
import type { TransferRecord } from '../../coordinator/model.ts'
import { rawEntries, tempStore, transferInput } from './helpers.ts'
import { describeStoreConformance } from './store-conformance.ts'
import type { StoreHarness } from './store-conformance.ts'

const T0 = Date.parse('2025-06-01T12:00:00.000Z')
const tenant = 'default'

describeStoreConformance('LevelDB', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'staccato-store-'))
  let gate: { reached: () => void, released: Promise<void> } | undefined
  // Holds the next group commit until released: LevelDB runs in this process, so the hold is a hook, not a lock.
  const beforeCommit = async (): Promise<void> => {
    const held = gate
    gate = undefined
    if (held === undefined) return
    // The writes in this group finish running (their memory changes) in microtasks after their batch is queued.
    setImmediate(held.reached)
    await held.released
  }
  const handle: StoreHarness = {
    store: await TransferStore.open(dir, { beforeCommit }),
    async reopen () {
      await handle.store.close()
      handle.store = await TransferStore.open(dir, { beforeCommit })
      return handle.store
    },
    async cleanup () {
      await handle.store.close()
      await rm(dir, { recursive: true, force: true })
    },
    async hold () {
      let reached!: () => void
      let release!: () => void
      const reachedP = new Promise<void>(resolve => { reached = resolve })
      gate = { reached, released: new Promise<void>(resolve => { release = resolve }) }
      return { reached: reachedP, release: async () => { release() } }
    }
  }
  return handle
})

/** How the LevelDB store lays out its keys (store-keys.ts); the behaviour is in the conformance suite. */
describe('TransferStore on LevelDB', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  beforeEach(async () => { h = await tempStore() })
  afterEach(async () => { await h.cleanup() })

  it('writes the record, its state index and its event together', async () => {
    const { record } = await h.store.create(transferInput('a', 'b'), { tenant, now: T0 })
    await h.store.close()
    expect(await rawEntries(h.dir, 't')).toEqual([[`t!${record.id}`, record]])
    expect(await rawEntries(h.dir, 's')).toEqual([[`s!queued!${record.id}`, '']])
    const events = await rawEntries(h.dir, 'e')
    expect(events).toHaveLength(1)
    expect(events[0][1]).toMatchObject({ seq: 1, topic: `transfer.${record.id}.state`, tenant, data: { from: null, to: 'queued', attempt: 0 } })
    h.store = await TransferStore.open(h.dir)
  })

  it('keeps the state index of a record with the record, through a retry and a delete', async () => {
    const queued = async (): Promise<TransferRecord> => (await h.store.create(transferInput('a', 'b'), { tenant, now: T0 })).record
    const { id } = await queued()
    await h.store.transition(id, 'scheduled', { attempt: 1 }, { now: T0 + 1 })
    await h.store.transition(id, 'active', {}, { now: T0 + 2 })
    await h.store.transition(id, 'queued', {}, { now: T0 + 3 })
    await h.store.close()
    expect(await rawEntries(h.dir, 's')).toEqual([[`s!queued!${id}`, '']])
    h.store = await TransferStore.open(h.dir)
    await h.store.transition(id, 'canceled')
    await h.store.remove(id)
    const again = await queued()
    await h.store.close()
    expect((await rawEntries(h.dir, 's')).map(([k]) => k)).toEqual([`s!queued!${again.id}`])
    h.store = await TransferStore.open(h.dir)
  })

  it('writes an agent\'s report of a tree\'s files as one entry, spread into per-path rows by a listing', async () => {
    const { record } = await h.store.create(transferInput('a', 'b'), { tenant, now: T0 })
    const rows = Array.from({ length: 256 }, (_, i) => ({ path: `d/${String(i).padStart(3, '0')}`, state: 'done' as const, size: i }))
    await h.store.putTreeFiles(record.id, rows)
    await h.store.putTreeFiles(record.id, [{ path: 'd/000', state: 'failed', size: 0, error: { code: 'not_found', message: 'gone', retryable: false } }])
    await h.store.close()
    // A LevelDB entry per file was a third of the coordinator's CPU on a tree of small files.
    expect((await rawEntries(h.dir, 'g')).map(([k]) => k)).toEqual([`g!${record.id}!0000000001`, `g!${record.id}!0000000002`])
    expect(await rawEntries(h.dir, 'f')).toEqual([])
    h.store = await TransferStore.open(h.dir)
    expect((await h.store.listTreeFiles(record.id, { limit: 1 })).items).toEqual([{ path: 'd/000', state: 'failed', size: 0, error: { code: 'not_found', message: 'gone', retryable: false } }])
    await h.store.close()
    expect(await rawEntries(h.dir, 'g')).toEqual([])
    expect(await rawEntries(h.dir, 'f')).toHaveLength(256)
    h.store = await TransferStore.open(h.dir)
  })
})
