import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import type { Dispatcher } from '../../coordinator/dispatch.ts'
import type { TransferStore } from '../../coordinator/store.ts'
import type { TransferRecord } from '../../coordinator/model.ts'
import { agent, offlineDispatcher, tempStore, transferInput } from './helpers.ts'

/**
 * Store writes the dispatcher goes on without (progress, active, verifying):
 * a lost race stays quiet, any other failure is logged rather than swallowed.
 * A real store, a real registry with no agent connected.
 */
describe('dispatcher: store writes it can do without', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  let store: TransferStore
  let dispatcher: Dispatcher
  let logged: Array<{ msg: string, fields?: Record<string, unknown>, level?: string }>

  beforeEach(async () => {
    h = await tempStore()
    store = h.store
    for (const name of ['a', 'b']) await store.putAgent(agent(name))
    logged = []
    dispatcher = (await offlineDispatcher(store, logged)).dispatcher
  })
  afterEach(async () => { await h.cleanup() })

  /** A transfer from a to b, run by b at attempt 1, left `scheduled` or `active`. */
  async function transferIn (state: 'scheduled' | 'active'): Promise<TransferRecord> {
    const { record } = await store.create(transferInput('a', 'b'), { tenant: 't' })
    await store.transition(record.id, 'scheduled', { executor: 'b', attempt: 1 })
    if (state === 'active') await store.transition(record.id, 'active')
    return store.get(record.id) as TransferRecord
  }

  const missed = (): typeof logged => logged.filter(l => l.msg.startsWith('could not record'))

  it('logs a progress report the store refused', async () => {
    const rec = await transferIn('active')
    void dispatcher.handlers.progress({ transferId: rec.id, attempt: 1, bytesDone: -5 }, { agent: 'b' })
    await vi.waitFor(() => { expect(missed()).toHaveLength(1) }, { timeout: 5000, interval: 10 })
    expect(missed()[0]).toMatchObject({ msg: 'could not record progress', level: 'warn', fields: { transferId: rec.id, agent: 'b', attempt: 1, code: 'invalid_argument' } })
  })

  it('logs a verifying report the store could not write', async () => {
    const rec = await transferIn('active')
    await store.close()
    await dispatcher.handlers.report({ transferId: rec.id, attempt: 1, outcome: 'verifying', bytesDone: 10, bytesTotal: 10 }, { agent: 'b' })
    expect(missed()).toMatchObject([{ msg: 'could not record the transfer as verifying', level: 'warn', fields: { transferId: rec.id, code: 'unavailable' } }])
  })

  it('says nothing when the record moved on first (a lost race)', async () => {
    const rec = await transferIn('scheduled')
    await dispatcher.handlers.report({ transferId: rec.id, attempt: 1, outcome: 'verifying', bytesDone: 10, bytesTotal: 10 }, { agent: 'b' })
    expect(store.get(rec.id)?.state).toBe('scheduled')
    expect(missed()).toEqual([])
  })
})
