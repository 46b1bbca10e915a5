import { afterEach, describe, expect, it } from 'vitest'
import { JobRunner, matchWords, parsePattern } from '../../coordinator/events/index.ts'
import { transferInput } from '../coordinator/helpers.ts'
import { eventsApi } from './helpers.ts'

type Api = Awaited<ReturnType<typeof eventsApi>>

describe('background checks', () => {
  let api: Api | undefined
  afterEach(async () => { await api?.cleanup(); api = undefined })

  it('reports an active transfer without progress as stalled, once per stall', async () => {
    api = await eventsApi({ events: { stalled: { afterMs: 60_000, intervalMs: 3_600_000 } } })
    const past = Date.now() - 120_000
    const { record } = await api.store.create(transferInput('a', 'b'), { tenant: 'acme', now: past })
    await api.store.transition(record.id, 'scheduled', { executor: 'b' }, { now: past })
    await api.store.transition(record.id, 'active', {}, { now: past })
    const moving = await api.store.create(transferInput('a', 'c'), { tenant: 'acme' })
    await api.store.transition(moving.record.id, 'scheduled')
    await api.store.transition(moving.record.id, 'active')

    const run = await api.events.jobs.runNow('stalled-transfers')
    expect(run.lastResult).toEqual({ stalled: 1, active: 2 })
    const stalled = (await api.store.readEvents(0, 100)).filter(e => e.topic.endsWith('.stalled'))
    expect(stalled).toEqual([expect.objectContaining({ topic: `transfer.${record.id}.stalled`, tenant: 'acme', data: expect.objectContaining({ agent: 'b', bytesDone: 0 }) })])

    // Still stalled: not reported again.
    expect((await api.events.jobs.runNow('stalled-transfers')).lastResult).toBeUndefined()
    // It moved, then stopped again: a new stall.
    await api.store.setProgress(record.id, { bytesDone: 5 }, { now: past + 1000 })
    expect((await api.events.jobs.runNow('stalled-transfers')).lastResult).toEqual({ stalled: 1, active: 2 })
  })

  it('writes at most one progress event per transfer per interval', async () => {
    api = await eventsApi()
    const t0 = Date.now()
    const { record } = await api.store.create(transferInput('a', 'b'), { tenant: 'default' })
    await api.store.transition(record.id, 'scheduled')
    await api.store.transition(record.id, 'active')
    for (let i = 0; i <= 12; i++) await api.store.setProgress(record.id, { bytesDone: i * 100, bytesTotal: 1200 }, { now: t0 + i * 1000 })
    const progress = (await api.store.readEvents(0, 100)).filter(e => e.topic === `transfer.${record.id}.progress`)
    // Reports every second for 12 s, at most one event per 5 s: at 0, 5 and 10 s.
    expect(progress.map(e => e.data.bytesDone)).toEqual([0, 500, 1000])
    expect(progress[1].data).toMatchObject({ bytesTotal: 1200 })
  })

  it('runs retention as a background job, in batches, and logs what a job did', async () => {
    api = await eventsApi({ events: { retention: { maxAgeMs: 1e12, maxCount: 3, intervalMs: 3_600_000 } } })
    for (let i = 0; i < 10; i++) await api.store.create(transferInput('a', 'b', `${i}.img`), { tenant: 'default' })
    for (let i = 0; i < 1200; i++) await api.store.appendEvent('test.filler', 'default', { i }, { sync: false })
    const status = await api.events.jobs.runNow('retention')
    expect(status).toMatchObject({ name: 'retention', runs: 1, failures: 0, lastResult: { eventsDeleted: 1207, trimmedThrough: 1207 } })
    expect((await api.store.readEvents(0, 100)).map(e => e.seq)).toEqual([1208, 1209, 1210])

    const lines: Array<[string, string, Record<string, unknown> | undefined]> = []
    const runner = new JobRunner((level, msg, fields) => lines.push([level, msg, fields]))
    runner.add({ name: 'busy', intervalMs: 3_600_000, run: async () => ({ done: 2 }) })
    runner.add({ name: 'idle', intervalMs: 3_600_000, run: async () => undefined })
    runner.add({ name: 'broken', intervalMs: 3_600_000, run: async () => { throw new Error('boom') } })
    runner.start()
    await runner.runNow('busy')
    await runner.runNow('idle')
    expect(await runner.runNow('broken')).toMatchObject({ failures: 1, lastError: 'boom' })
    await runner.stop()
    expect(lines).toContainEqual(['info', 'background job ran', expect.objectContaining({ job: 'busy', done: 2 })])
    expect(lines).toContainEqual(['debug', 'background job ran', expect.objectContaining({ job: 'idle' })])
    expect(lines).toContainEqual(['warn', 'background job failed', { job: 'broken', error: 'boom' }])
  })
})

describe('topic patterns', () => {
  const m = (pattern: string, topic: string): boolean => matchWords(parsePattern(pattern), topic.split('.'))

  it('matches * as exactly one word and # as zero or more', () => {
    expect(m('transfer.*.state', 'transfer.tr_1.state')).toBe(true)
    expect(m('transfer.*.state', 'transfer.state')).toBe(false)
    expect(m('transfer.*.state', 'transfer.a.b.state')).toBe(false)
    expect(m('transfer.#.state', 'transfer.state')).toBe(true)
    expect(m('transfer.#.state', 'transfer.a.b.state')).toBe(true)
    expect(m('transfer.#', 'transfer')).toBe(true)
    expect(m('transfer.*', 'transfer')).toBe(false)
    expect(m('#', 'anything.at.all')).toBe(true)
    expect(m('#.#.#.x', 'a.b.x')).toBe(true)
    expect(m('#.#.#.x', 'a.b.y')).toBe(false)
    expect(m('*.*', 'a.b')).toBe(true)
    expect(m('agent.#.online', 'agent.store.1.online')).toBe(true)
  })

  it('refuses wildcards inside words and empty words', () => {
    for (const p of ['a*', 'a.b#', 'a..b', '', '.a', 'a b']) expect(() => parsePattern(p), p).toThrow(/topics/)
  })
})
