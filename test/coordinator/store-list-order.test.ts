import { afterEach, beforeEach, describe, it, expect } from 'vitest'
import { tempStore, transferInput } from './helpers.ts'

describe('store list order', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  const ids: string[] = []
  beforeEach(async () => {
    h = await tempStore()
    ids.length = 0
    for (let i = 0; i < 20; i++) {
      const { record } = await h.store.create(transferInput('a', 'b', `f${i}.img`), { tenant: 'default' })
      ids.push(record.id)
    }
    // Two canceled out of twenty: a small state set, sorted on its own rather than scanned for.
    await h.store.transition(ids[3], 'canceled')
    await h.store.transition(ids[12], 'canceled')
  })
  afterEach(async () => { await h.cleanup() })

  it('pages newest first with desc, each page after the previous one\'s next, and oldest first by default', () => {
    const seen: string[] = []
    let after: string | undefined
    for (let i = 0; i < 10; i++) {
      const page = h.store.list({ limit: 6, order: 'desc', after })
      seen.push(...page.items.map(r => r.id))
      if (page.next === undefined) break
      after = page.next
    }
    expect(seen).toEqual([...ids].reverse())
    expect(h.store.list({ limit: 3 }).items.map(r => r.id)).toEqual(ids.slice(0, 3))
  })

  it('pages one state newest first too', () => {
    const first = h.store.list({ limit: 1, order: 'desc', state: 'canceled' })
    expect(first.items.map(r => r.id)).toEqual([ids[12]])
    expect(h.store.list({ limit: 1, order: 'desc', state: 'canceled', after: first.next }).items.map(r => r.id)).toEqual([ids[3]])
    expect(h.store.list({ limit: 5, order: 'desc', state: 'queued', after: ids[10] }).items.map(r => r.id)).toEqual([ids[9], ids[8], ids[7], ids[6], ids[5]])
  })
})
