import { describe, it, expect } from 'vitest'
import { createScheduler, defaultExecutor, fifo, schedulerView } from '../../coordinator/scheduler/index.ts'
import type { SchedulerView } from '../../coordinator/scheduler/index.ts'
import type { TransferRecord } from '../../coordinator/model.ts'
import { agent, tempStore } from './helpers.ts'

const NOW = 1_750_000_000_000
let seq = 0

/** A queued record; ids follow creation order like the store's. */
function rec (from: string, to: string, extra: Partial<TransferRecord> = {}): TransferRecord {
  const id = `tr_${String(++seq).padStart(26, '0')}`
  return {
    id,
    tenant: 'default',
    state: 'queued',
    source: `agent://${from}/v/f`,
    destination: `agent://${to}/v/f`,
    priority: 0,
    retries: 3,
    labels: {},
    agents: [from, to],
    attempt: 0,
    progress: { bytesDone: 0, rate: 0, updatedAt: '' },
    createdAt: '',
    updatedAt: '',
    ...extra
  }
}

function view (queued: TransferRecord[], over: Partial<SchedulerView> = {}): SchedulerView {
  return {
    now: NOW,
    queued,
    activeTotal: 0,
    activeByAgent: new Map(),
    isOnline: () => true,
    // The destination pulls.
    executorFor: r => r.agents[1],
    ...over
  }
}

describe('fifo scheduler', () => {
  it('takes transfers in the order given, up to maxActive', () => {
    const q = [rec('a', 'b'), rec('c', 'd'), rec('e', 'f')]
    expect(fifo({ maxActive: 2 }).decide(view(q))).toEqual([
      { id: q[0].id, executor: 'b' },
      { id: q[1].id, executor: 'd' }
    ])
  })

  it('counts transfers already running against maxActive', () => {
    const q = [rec('a', 'b'), rec('c', 'd')]
    expect(fifo({ maxActive: 3 }).decide(view(q, { activeTotal: 2 })).map(d => d.id)).toEqual([q[0].id])
    expect(fifo({ maxActive: 3 }).decide(view(q, { activeTotal: 3 }))).toEqual([])
  })

  it('limits every agent a transfer touches, source as well as executor, and passes over blocked ones', () => {
    // Source a is shared: after two transfers from a, the third waits, but g→h behind it still runs.
    const q = [rec('a', 'b'), rec('a', 'c'), rec('a', 'd'), rec('g', 'h')]
    const decided = fifo({ maxPerAgent: 2 }).decide(view(q)).map(d => d.id)
    expect(decided).toEqual([q[0].id, q[1].id, q[3].id])
  })

  it('counts running transfers per agent', () => {
    const q = [rec('a', 'b'), rec('c', 'd')]
    const decided = fifo({ maxPerAgent: 2 }).decide(view(q, { activeByAgent: new Map([['b', 2]]), activeTotal: 2 }))
    expect(decided.map(d => d.id)).toEqual([q[1].id])
  })

  it('passes over transfers waiting for notBefore until their time comes', () => {
    const later = rec('a', 'b', { notBefore: NOW + 1 })
    const due = rec('c', 'd', { notBefore: NOW })
    expect(fifo().decide(view([later, due])).map(d => d.id)).toEqual([due.id])
    expect(fifo().decide(view([later, due], { now: NOW + 1 })).map(d => d.id)).toEqual([later.id, due.id])
  })

  it('passes over transfers whose executor or other agent is offline or unknown', () => {
    const q = [rec('a', 'down'), rec('down', 'b'), rec('a', 'b'), rec('x', 'y')]
    const decided = fifo().decide(view(q, {
      isOnline: name => name !== 'down',
      executorFor: r => r.agents[1] === 'y' ? undefined : r.agents[1]
    }))
    expect(decided.map(d => d.id)).toEqual([q[2].id])
  })

  it('counts an executor that is not among the named agents (a plug-in transfer run via an agent)', () => {
    const q = [0, 1, 2].map(() => rec('x', 'y', { agents: [] }))
    const decided = fifo({ maxPerAgent: 2 }).decide(view(q, { executorFor: () => 'runner' }))
    expect(decided).toEqual([{ id: q[0].id, executor: 'runner' }, { id: q[1].id, executor: 'runner' }])
  })

  it('decides correctly over 100,000 queued transfers', () => {
    const agents = Array.from({ length: 50 }, (_, i) => `agent-${i}`)
    const queued: TransferRecord[] = []
    for (let i = 0; i < 100_000; i++) {
      const from = agents[i % 50]
      const to = agents[(i * 7 + 3) % 50]
      queued.push(rec(from, to === from ? agents[(i + 1) % 50] : to, {
        // Every third transfer is still waiting out a retry delay.
        notBefore: i % 3 === 0 ? NOW + 1000 : undefined,
        priority: i % 5 === 0 ? 10 : 0
      }))
    }
    // The view's queue is in the store's order: priority, then id.
    queued.sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : 1))
    const offline = new Set(['agent-7', 'agent-13'])
    const scheduler = fifo({ maxActive: 200, maxPerAgent: 5 })
    const decisions = scheduler.decide(view(queued, {
      isOnline: name => !offline.has(name),
      activeTotal: 10,
      activeByAgent: new Map([['agent-0', 5], ['agent-1', 4]])
    }))

    expect(decisions.length).toBeLessThanOrEqual(190)
    const byId = new Map(queued.map(r => [r.id, r]))
    const load = new Map<string, number>([['agent-0', 5], ['agent-1', 4]])
    for (const d of decisions) {
      const r = byId.get(d.id) as TransferRecord
      expect(r.notBefore).toBeUndefined()
      expect(d.executor).toBe(r.agents[1])
      for (const a of r.agents) load.set(a, (load.get(a) ?? 0) + 1)
    }
    expect(decisions.filter(d => byId.get(d.id)?.agents.some(a => offline.has(a)))).toEqual([])
    expect([...load].filter(([, n]) => n > 5)).toEqual([])
    // Order is kept: decisions are a subsequence of the queue.
    const position = new Map(queued.map((r, i) => [r.id, i]))
    const positions = decisions.map(d => position.get(d.id) as number)
    expect([...positions].sort((a, b) => a - b)).toEqual(positions)
    // Nothing eligible was passed over: every transfer left behind was blocked (loads only grow, so the final ones tell).
    expect(decisions.length).toBeLessThan(190)
    const decided = new Set(decisions.map(d => d.id))
    const passedOver = queued.filter(r => !decided.has(r.id) &&
      r.notBefore === undefined && !r.agents.some(a => offline.has(a) || (load.get(a) ?? 0) >= 5))
    expect(passedOver).toEqual([])
    expect(decisions.length).toBeGreaterThan(0)
  })

  it('rejects nonsense limits', () => {
    expect(() => fifo({ maxActive: 0 })).toThrow(/maxActive/)
    expect(() => fifo({ maxPerAgent: 1.5 })).toThrow(/maxPerAgent/)
  })

  it('is found by name', () => {
    expect(createScheduler('fifo', { maxActive: 1 }).name).toBe('fifo')
    expect(() => createScheduler('lottery')).toThrow(/unknown 'lottery' \(known: fifo\)/)
  })
})

describe('defaultExecutor', () => {
  it('prefers the destination agent, then a via, then the source agent', () => {
    expect(defaultExecutor(rec('a', 'b'))).toBe('b')
    expect(defaultExecutor({ ...rec('a', 'b'), destination: 'null://?via=c' })).toBe('c')
    expect(defaultExecutor({ ...rec('a', 'b'), destination: 'null://' })).toBe('a')
    expect(defaultExecutor({ ...rec('a', 'b'), source: 'random://?size=1&via=d', destination: 'null://' })).toBe('d')
    expect(defaultExecutor({ ...rec('a', 'b'), source: 'random://?size=1', destination: 'null://' })).toBeUndefined()
  })
})

describe('schedulerView', () => {
  it('counts running transfers per agent and reads online from the store', async () => {
    const h = await tempStore()
    try {
      const { store } = h
      await store.putAgent(agent('a'))
      await store.putAgent(agent('b'))
      await store.putAgent(agent('c', false))
      const t1 = (await store.create({ source: 'agent://a/v/1', destination: 'agent://b/v/1' }, { tenant: 'default' })).record
      const t2 = (await store.create({ source: 'agent://a/v/2', destination: 'agent://c/v/2' }, { tenant: 'default' })).record
      await store.create({ source: 'agent://b/v/3', destination: 'agent://a/v/3' }, { tenant: 'default' })
      await store.transition(t1.id, 'scheduled', { executor: 'b' })
      await store.transition(t1.id, 'active')
      const v = schedulerView(store, { now: NOW })
      expect(v.activeTotal).toBe(1)
      expect([...v.activeByAgent].sort()).toEqual([['a', 1], ['b', 1]])
      expect(v.queued.map(r => r.id)).toContain(t2.id)
      expect(v.isOnline('a')).toBe(true)
      expect(v.isOnline('c')).toBe(false)
      expect(v.isOnline('nobody')).toBe(false)
      // t2 pulls to offline c, so only the third runs.
      const decisions = fifo().decide(v)
      expect(decisions).toHaveLength(1)
      expect(decisions[0].executor).toBe('a')
    } finally {
      await h.cleanup()
    }
  })
})
