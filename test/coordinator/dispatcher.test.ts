import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { NetworkError } from '../../mesh/index.ts'
import type { ControlParams } from '../../mesh/index.ts'
import { Dispatcher } from '../../coordinator/dispatch.ts'
import { DistributionManager } from '../../coordinator/distribution.ts'
import { createScheduler } from '../../coordinator/scheduler/index.ts'
import { WAITING_SCAN_MS } from '../../coordinator/waiting.ts'
import type { TransferRecord } from '../../coordinator/model.ts'
import { FakeClock } from './fake-clock.ts'
import { FakeAgents, settle, until } from './fake-agents.ts'
import { agent, tempStore, transferInput } from './helpers.ts'
import { TransferStore } from '../../coordinator/store.ts'

/**
 * The dispatcher alone, in the style of Kraken's dispatcher_test.go: a real
 * store on a temporary LevelDB, fake agents, a fake clock. No process, no
 * socket; time moves only when a test says so.
 */
describe('dispatcher', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  let store: TransferStore
  let agents: FakeAgents
  let clock: FakeClock
  let dispatcher: Dispatcher | undefined

  beforeEach(async () => {
    h = await tempStore()
    store = h.store
    agents = new FakeAgents()
    clock = new FakeClock(Date.now())
    for (const name of ['a', 'b']) await store.putAgent(agent(name))
  })
  afterEach(async () => {
    dispatcher?.stop()
    dispatcher = undefined
    await h.cleanup()
  })

  async function start (opts: { graceMs?: number, log?: (msg: string) => void } = {}): Promise<Dispatcher> {
    const key = await generateKeyPair('Ed25519')
    const log = opts.log ?? ((): void => {})
    const distributions = new DistributionManager({ store, agents, clock, key, log, pieceSize: 1 << 20, peersPerParticipant: 8, ticketTtlSeconds: 60 })
    dispatcher = new Dispatcher({
      store, agents, distributions, clock, key, log, scheduler: createScheduler('fifo', {}),
      retryBaseMs: 1000, retryMaxMs: 60_000, graceMs: opts.graceMs ?? 0, ticketTtlSeconds: 60
    })
    dispatcher.start()
    return dispatcher
  }

  const state = (id: string): string | undefined => store.get(id)?.state
  const executes = (): Array<ControlParams<'execute'>> => agents.sentTo('b', 'execute') as Array<ControlParams<'execute'>>

  it('dispatches a submitted transfer on the submit itself, with a ticket for the source agent', async () => {
    agents.online.add('a').add('b')
    await start()
    const { record } = await store.create(transferInput('a', 'b'), { tenant: 't' })
    await until(() => state(record.id) === 'active', 'the transfer to be active')
    expect(executes()).toEqual([expect.objectContaining({ transferId: record.id, attempt: 1, ticket: expect.any(String), sourcePeer: { peerId: '12D3KooWa', addrs: ['/ip4/127.0.0.1/tcp/4001'] } })])
  })

  it('waits out a retry\'s back-off in virtual time, then runs the next attempt', async () => {
    agents.online.add('a').add('b')
    agents.answer = async () => { throw new NetworkError('connection reset') }
    await start()
    const { record } = await store.create(transferInput('a', 'b'), { tenant: 't' })
    await until(() => state(record.id) === 'queued' && store.get(record.id)?.attempt === 1 && store.get(record.id)?.notBefore !== undefined, 'the first attempt to be requeued')
    const notBefore = store.get(record.id)?.notBefore as number
    // Base 1000 ms, jitter halves at most: the delay is between 500 and 1000 ms of virtual time.
    expect(notBefore - clock.now()).toBeGreaterThanOrEqual(500)
    expect(notBefore - clock.now()).toBeLessThanOrEqual(1000)
    agents.answer = async () => ({ accepted: true })
    await clock.advance(notBefore - clock.now() - 1)
    await settle()
    expect(executes()).toHaveLength(1)
    await clock.advance(1)
    await until(() => state(record.id) === 'active', 'the second attempt to be active')
    expect(executes().map(j => j.attempt)).toEqual([1, 2])
  })

  it('keeps a transfer queued, saying why, while an agent it needs is offline, and starts it when the agent is back', async () => {
    agents.online.add('a')
    await start()
    const { record } = await store.create(transferInput('a', 'b'), { tenant: 't' })
    // The queue is looked over at most every WAITING_SCAN_MS: the start-up pass may have looked before the transfer was committed (and so visible).
    await clock.advance(WAITING_SCAN_MS)
    await until(() => store.get(record.id)?.waiting?.agent === 'b', 'the record to name the agent it waits for')
    expect(state(record.id)).toBe('queued')
    expect(executes()).toEqual([])
    agents.online.add('b')
    dispatcher?.onOnline('b', { name: 'b', version: '1', volumes: [], plugins: [], addrs: [], active: [] })
    await until(() => state(record.id) === 'active', 'the transfer to start')
    expect(executes()).toHaveLength(1)
  })

  it('after a restart, requeues an in-flight transfer whose agent never came back only once the grace period passed', async () => {
    const { record } = await store.create(transferInput('a', 'b'), { tenant: 't' })
    await store.transition(record.id, 'scheduled', { executor: 'b', attempt: 1 })
    await store.transition(record.id, 'active')
    agents.online.add('a')
    await start({ graceMs: 5000 })
    await clock.advance(4999)
    await settle()
    expect(state(record.id)).toBe('active')
    await clock.advance(1)
    await until(() => state(record.id) === 'queued', 'the orphaned attempt to be requeued')
    expect((store.get(record.id) as TransferRecord).lastError).toMatchObject({ code: 'agent_offline', attempt: 1 })
  })

  it('a cancel reaches the agent running the transfer', async () => {
    agents.online.add('a').add('b')
    const d = await start()
    const { record } = await store.create(transferInput('a', 'b'), { tenant: 't' })
    await until(() => state(record.id) === 'active', 'the transfer to be active')
    const canceled = await store.transition(record.id, 'canceled')
    d.onCancel(canceled)
    // Once or twice: the dispatch may also see the cancel land right after its job did, and send its own.
    expect(agents.sentTo('b', 'cancel')).toContainEqual({ transferId: record.id })
  })

  it('skips a transfer whose cancel had not committed when the pass read the queue, and schedules the rest in the same pass', async () => {
    // A store whose next commit the test holds: the pass reads the queue (what has committed) while the cancel is on its way.
    const dir = await mkdtemp(join(tmpdir(), 'staccato-dispatch-'))
    let gate: (() => void) | undefined
    let reached = false
    let release!: () => void
    const released = new Promise<void>(resolve => { release = resolve })
    const held = await TransferStore.open(dir, {
      beforeCommit: async () => {
        if (gate === undefined) return
        gate = undefined
        reached = true
        await released
      }
    })
    try {
      store = held
      for (const name of ['a', 'b']) await store.putAgent(agent(name))
      agents.online.add('a').add('b')
      const first = (await store.create(transferInput('a', 'b', '1.img'), { tenant: 't' })).record
      const second = (await store.create(transferInput('a', 'b', '2.img'), { tenant: 't' })).record
      gate = () => {}
      const canceled = store.transition(first.id, 'canceled')
      await until(() => reached, 'the cancel to wait on its commit')
      const logged: string[] = []
      await start({ log: msg => { logged.push(msg) } })
      await settle()
      release()
      await canceled
      await until(() => state(second.id) === 'active', 'the second transfer to start')
      expect(state(first.id)).toBe('canceled')
      expect(logged).not.toContain('scheduling pass failed')
    } finally {
      release()
      dispatcher?.stop()
      dispatcher = undefined
      await held.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
