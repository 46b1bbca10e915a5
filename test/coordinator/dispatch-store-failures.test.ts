import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { MeshNode } from '../../mesh/index.ts'
import { AgentRegistry } from '../../coordinator/registry.ts'
import { Dispatcher } from '../../coordinator/dispatch.ts'
import { DistributionManager } from '../../coordinator/distribution.ts'
import { createScheduler } from '../../coordinator/scheduler/index.ts'
import type { TransferStore } from '../../coordinator/store.ts'
import type { TransferRecord } from '../../coordinator/model.ts'
import { agent, tempStore, transferInput } from './helpers.ts'

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
    const log = (msg: string, fields?: Record<string, unknown>, level?: string): void => { logged.push({ msg, fields, level }) }
    const key = await generateKeyPair('Ed25519')
    const registry = new AgentRegistry({
      node: undefined as unknown as MeshNode,
      store,
      admit: async () => ({ ok: false, reason: 'none here' }),
      heartbeatMs: 1000,
      heartbeatTimeoutMs: 3000,
      log,
      onCall: async () => ({}),
      onCast: () => {},
      onRegister: async () => [],
      onOnline: () => {},
      onOffline: async () => {}
    })
    const distributions = new DistributionManager({ store, registry, key, log, pieceSize: 1 << 20, peersPerParticipant: 8, ticketTtlSeconds: 60 })
    dispatcher = new Dispatcher({
      store, registry, distributions, scheduler: createScheduler('fifo', {}), key, log,
      retryBaseMs: 100, retryMaxMs: 1000, graceMs: 0, ticketTtlSeconds: 60, tickMs: 100
    })
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
    dispatcher.onCast('b', 'progress', { transferId: rec.id, attempt: 1, bytesDone: -5 })
    await vi.waitFor(() => { expect(missed()).toHaveLength(1) }, { timeout: 5000, interval: 10 })
    expect(missed()[0]).toMatchObject({ msg: 'could not record progress', level: 'warn', fields: { transferId: rec.id, agent: 'b', attempt: 1, code: 'invalid_argument' } })
  })

  it('logs a verifying report the store could not write', async () => {
    const rec = await transferIn('active')
    await store.close()
    await dispatcher.onCall('b', 'report', { transferId: rec.id, attempt: 1, outcome: 'verifying', bytesDone: 10, bytesTotal: 10 })
    expect(missed()).toMatchObject([{ msg: 'could not record the transfer as verifying', level: 'warn', fields: { transferId: rec.id, code: 'unavailable' } }])
  })

  it('says nothing when the record moved on first (a lost race)', async () => {
    const rec = await transferIn('scheduled')
    await dispatcher.onCall('b', 'report', { transferId: rec.id, attempt: 1, outcome: 'verifying', bytesDone: 10, bytesTotal: 10 })
    expect(store.get(rec.id)?.state).toBe('scheduled')
    expect(missed()).toEqual([])
  })
})
