import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { stalledJob } from '../../coordinator/events/stalled.ts'
import { tempStore, transferInput } from '../coordinator/helpers.ts'

describe('stalled transfers', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  beforeEach(async () => { h = await tempStore() })
  afterEach(async () => { await h.cleanup() })

  it('are reported by the leader of replicas only', async () => {
    const long = Date.now() - 600_000
    const { record } = await h.store.create(transferInput('a', 'b'), { tenant: 'default', now: long })
    await h.store.transition(record.id, 'scheduled', {}, { now: long })
    await h.store.transition(record.id, 'active', {}, { now: long })
    let leading = false
    const job = stalledJob(h.store, { afterMs: 60_000, intervalMs: 15_000 }, () => {}, () => leading)
    const signal = new AbortController().signal
    expect(await job.run(signal)).toBeUndefined()
    const stalledEvents = async (): Promise<number> => (await h.store.readEvents(0, 100)).filter(e => e.topic === `transfer.${record.id}.stalled`).length
    expect(await stalledEvents()).toBe(0)
    leading = true
    expect(await job.run(signal)).toEqual({ stalled: 1, active: 1 })
    expect(await stalledEvents()).toBe(1)
  })
})
