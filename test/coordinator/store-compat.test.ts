import { afterEach, describe, it, expect } from 'vitest'
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TransferStore } from '../../coordinator/store.ts'
import type { AgentRecord, StoreEvent, TransferRecord } from '../../coordinator/model.ts'
import { transferInput } from './helpers.ts'

const FIXTURE = new URL('../fixtures/store-v1/', import.meta.url)

interface Expected {
  seq: number
  trimmedThrough: number
  transfers: TransferRecord[]
  queued: string[]
  agents: AgentRecord[]
  events: StoreEvent[]
  aux: Array<[string, unknown]>
  idempotent: { tenant: string, key: string, id: string }
}

/** A coordinator's existing data directory must still open: the fixture was written by the store before the contract (see its make.ts.txt). */
describe('a LevelDB store written by the previous code', () => {
  let dir: string | undefined
  afterEach(async () => { if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })

  it('opens with every transfer, agent, event, aux record and idempotency key, and numbers on from its seq', async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-store-v1-'))
    // Opening writes to the directory: the committed fixture stays as the old code left it.
    await cp(new URL('store', FIXTURE), join(dir, 'store'), { recursive: true })
    const expected = JSON.parse(await readFile(new URL('expected.json', FIXTURE), 'utf8')) as Expected
    const store = await TransferStore.open(join(dir, 'store'))
    try {
      expect(store.list({ limit: 100 }).items).toEqual(expected.transfers)
      expect(store.queuedInOrder().map(r => r.id)).toEqual(expected.queued)
      expect(store.listAgents()).toEqual(expected.agents)
      expect(await store.readEvents(0, 100)).toEqual(expected.events)
      expect(store.seq).toBe(expected.seq)
      expect(store.trimmedThrough).toBe(expected.trimmedThrough)
      expect([...await store.readAux({ gt: 'o!', lt: 'o~' }), ...await store.readAux({ gt: 'w!', lt: 'w~' })]).toEqual(expected.aux)
      const { tenant, key, id } = expected.idempotent
      expect(await store.create(transferInput('x', 'y'), { tenant, idempotencyKey: key })).toEqual({ record: store.get(id), created: false })
      const next = await store.create(transferInput('x', 'y'), { tenant })
      expect(next.record.id > expected.transfers.map(r => r.id).sort().at(-1)!).toBe(true)
      expect((await store.readEvents(expected.seq, 10)).map(e => e.seq)).toEqual([expected.seq + 1])
    } finally {
      await store.close()
    }
  })
})
