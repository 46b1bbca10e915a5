import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { ControlParams } from '../../mesh/index.ts'
import { AgentSessions } from '../../coordinator/agent-sessions.ts'
import { systemClock } from '../../coordinator/clock.ts'
import type { Dispatcher } from '../../coordinator/dispatch.ts'
import { DistributionManager } from '../../coordinator/distribution.ts'
import type { TransferStore } from '../../coordinator/store.ts'
import type { TransferRecord } from '../../coordinator/model.ts'
import { agent, offlineDispatcher, tempStore, transferInput } from './helpers.ts'

const SHA = 'a'.repeat(64)
const OTHER_SHA = 'b'.repeat(64)

/**
 * The coordinator's side of agent reports, over a real store, with no agent
 * connected (its casts reach no one), which is the
 * situation these paths are about: outcomes that arrive late or with a registration.
 */
describe('agent outcomes: a success is taken whenever it arrives, never twice, never over an end', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  let store: TransferStore
  let dispatcher: Dispatcher
  let logged: Array<{ msg: string, fields?: Record<string, unknown> }>

  beforeEach(async () => {
    h = await tempStore()
    store = h.store
    for (const name of ['a', 'b']) await store.putAgent(agent(name))
    logged = []
    dispatcher = (await offlineDispatcher(store, logged)).dispatcher
  })
  afterEach(async () => { await h.cleanup() })

  /** A transfer from a to b, run by b, left in `state` at `attempt`. */
  async function transferIn (state: 'queued' | 'active' | 'canceled', attempt: number): Promise<TransferRecord> {
    const { record } = await store.create(transferInput('a', 'b'), { tenant: 't' })
    for (let n = 1; n <= attempt; n++) {
      await store.transition(record.id, 'scheduled', { executor: 'b', attempt: n })
      await store.transition(record.id, 'active')
      if (n < attempt || state !== 'active') await store.transition(record.id, state === 'canceled' && n === attempt ? 'canceled' : 'queued')
    }
    return store.get(record.id) as TransferRecord
  }

  function report (rec: TransferRecord, attempt: number, extra: Record<string, unknown> = {}): ControlParams<'report'> {
    return { transferId: rec.id, attempt, outcome: 'succeeded', sha256: SHA, bytesDone: 10, bytesTotal: 10, ...extra } as ControlParams<'report'>
  }

  async function stateEvents (id: string): Promise<string[]> {
    return (await store.readEvents(0, 1000)).filter(e => e.topic === `transfer.${id}.state`).map(e => `${String(e.data.from)}→${String(e.data.to)}`)
  }

  it('requeued after its agent went away, the same attempt succeeds from its journaled outcome, walking every state', async () => {
    const rec = await transferIn('queued', 1)
    await dispatcher.handlers.report(report(rec, 1), { agent: 'b' })
    const done = store.get(rec.id) as TransferRecord
    expect(done.state).toBe('succeeded')
    expect(done.attempt).toBe(1)
    expect(done.sha256).toBe(SHA)
    expect((await stateEvents(rec.id)).slice(-4)).toEqual(['queued→scheduled', 'scheduled→active', 'active→verifying', 'verifying→succeeded'])
  })

  it('takes an earlier attempt\'s success while a later attempt runs, but not its failure', async () => {
    const rec = await transferIn('active', 2)
    await dispatcher.handlers.report(report(rec, 1, { outcome: 'failed', sha256: undefined, error: { code: 'network', message: 'x', retryable: true } }), { agent: 'b' })
    expect(store.get(rec.id)?.state).toBe('active')
    await dispatcher.handlers.report(report(rec, 1), { agent: 'b' })
    expect(store.get(rec.id)).toMatchObject({ state: 'succeeded', attempt: 2, sha256: SHA })
  })

  it('never revives a canceled or deleted transfer, nor takes a digest other than the one asked for', async () => {
    const canceled = await transferIn('canceled', 1)
    await dispatcher.handlers.report(report(canceled, 1), { agent: 'b' })
    expect(store.get(canceled.id)?.state).toBe('canceled')
    await store.remove(canceled.id)
    await expect(dispatcher.handlers.report(report(canceled, 1), { agent: 'b' })).resolves.toEqual({})
    expect(store.get(canceled.id)).toBeUndefined()

    const { record } = await store.create({ ...transferInput('a', 'b', 'c.img'), checksum: { algorithm: 'sha256', value: OTHER_SHA } }, { tenant: 't' })
    await store.transition(record.id, 'scheduled', { executor: 'b', attempt: 1 })
    await store.transition(record.id, 'active')
    await dispatcher.handlers.report(report(record, 1), { agent: 'b' })
    expect(store.get(record.id)?.state).toBe('active')
    // Another agent cannot report it either.
    await dispatcher.handlers.report(report(record, 1, { sha256: OTHER_SHA }), { agent: 'a' })
    expect(store.get(record.id)?.state).toBe('active')
    expect(logged.filter(l => l.msg === 'report acknowledged and ignored')).toHaveLength(4)
  })

  it('two deliveries of one success at once make one succeeded event', async () => {
    const rec = await transferIn('active', 1)
    await Promise.all([dispatcher.handlers.report(report(rec, 1), { agent: 'b' }), dispatcher.handlers.report(report(rec, 1), { agent: 'b' })])
    expect(store.get(rec.id)?.state).toBe('succeeded')
    expect((await stateEvents(rec.id)).filter(e => e.endsWith('→succeeded'))).toHaveLength(1)
  })

  it('a registration settles before the agent is online: outcomes taken, running attempts kept active, lost ones requeued', async () => {
    const finished = await transferIn('queued', 1)
    const running = await transferIn('queued', 1)
    const lost = await transferIn('active', 1)
    const settled = await dispatcher.onRegister('b', {
      name: 'b', version: '0', volumes: [], plugins: [], addrs: [],
      active: [finished.id, running.id],
      running: [{ transferId: running.id, attempt: 1 }],
      outcomes: [report(finished, 1) as never]
    })
    expect(settled).toEqual([finished.id])
    expect(store.get(finished.id)).toMatchObject({ state: 'succeeded', attempt: 1 })
    expect(store.get(running.id)).toMatchObject({ state: 'active', attempt: 1 })
    expect(store.get(running.id)?.notBefore).toBeUndefined()
    expect(store.get(lost.id)).toMatchObject({ state: 'queued', attempt: 1 })
  })
})

describe('distribution outcomes delivered twice at once', () => {
  it('record the destination once: one log line, one feed event', async () => {
    const h = await tempStore()
    try {
      const { store } = h
      for (const name of ['a', 'b', 'c']) await store.putAgent(agent(name))
      const logged: string[] = []
      const log = (msg: string): void => { logged.push(msg) }
      const agents = new AgentSessions(systemClock)
      const distributions = new DistributionManager({ store, agents, clock: systemClock, key: await generateKeyPair('Ed25519'), log, pieceSize: 1 << 20, peersPerParticipant: 8, ticketTtlSeconds: 60 })
      const { record } = await store.create({ source: 'agent://a/images/x.img', destinations: ['agent://b/images/x.img', 'agent://c/images/x.img'] }, { tenant: 't' })
      await store.transition(record.id, 'scheduled', { executor: 'a', attempt: 1 })
      await store.update(record.id, () => ({ manifest: { size: 10, mtime: 1, pieceSize: 1 << 20, sha256: SHA, pieces: [SHA] } }), `transfer.${record.id}.manifest`, {})
      await store.transition(record.id, 'active')
      const delivery = { distributionId: record.id, destination: 'agent://b/images/x.img', outcome: 'succeeded' as const, sha256: SHA }
      await Promise.all([distributions.onReport('b', delivery), distributions.onReport('b', delivery)])
      const events = (await store.readEvents(0, 1000)).filter(e => e.topic === `transfer.${record.id}.destination`)
      expect(events.map(e => e.data)).toEqual([{ agent: 'b', state: 'succeeded' }])
      expect(logged.filter(m => m === 'distribution destination succeeded')).toHaveLength(1)
      expect(store.get(record.id)?.destinations?.find(d => d.agent === 'b')?.state).toBe('succeeded')
    } finally {
      await h.cleanup()
    }
  })
})
