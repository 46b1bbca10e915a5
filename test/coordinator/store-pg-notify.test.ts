import { afterEach, describe, expect, it, vi } from 'vitest'
import { NotifyPacer } from '../../coordinator/store-pg-notify.ts'
import type { Notice } from '../../coordinator/store-pg-notify.ts'

/** A pacer whose rounds are recorded and end when the test says; time is the test's (fake timers, injected clock). */
function harness (gapMs: number) {
  const sent: Array<{ seq: number, keys: string[] }> = []
  const ends: Array<() => void> = []
  const pacer = new NotifyPacer({
    send: async (notice: Notice) => {
      sent.push({ seq: notice.seq, keys: [...notice.keys].sort() })
      await new Promise<void>(resolve => { ends.push(resolve) })
    },
    now: () => Date.now()
  }, gapMs)
  return { pacer, sent, endRound: () => { ends.shift()?.() } }
}

async function ticksUntil (cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !cond(); i++) await Promise.resolve()
}

describe('NotifyPacer', () => {
  afterEach(() => { vi.useRealTimers() })

  it('sends a commit\'s notification at once after a quiet spell', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const h = harness(50)
    h.pacer.add(7, ['w!a'])
    expect(h.sent).toEqual([{ seq: 7, keys: ['w!a'] }])
  })

  it('under load, sends one round per gap saying the highest seq and every key of the commits meanwhile', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const h = harness(50)
    h.pacer.add(3, [])
    // While the first round is on its way and within the gap: held, merged.
    h.pacer.add(5, ['k!x'])
    h.pacer.add(4, ['w!y', 'k!x'])
    h.endRound()
    await vi.advanceTimersByTimeAsync(49)
    expect(h.sent).toEqual([{ seq: 3, keys: [] }])
    await vi.advanceTimersByTimeAsync(1)
    expect(h.sent).toEqual([{ seq: 3, keys: [] }, { seq: 5, keys: ['k!x', 'w!y'] }])
    // Nothing pending after it: no round.
    h.endRound()
    await vi.advanceTimersByTimeAsync(200)
    expect(h.sent).toHaveLength(2)
  })

  it('sends rounds one at a time: a round that takes longer than the gap holds the next', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const h = harness(10)
    h.pacer.add(1, [])
    h.pacer.add(2, [])
    await vi.advanceTimersByTimeAsync(100)
    expect(h.sent.map(r => r.seq)).toEqual([1])
    h.endRound()
    await ticksUntil(() => h.sent.length === 2)
    expect(h.sent.map(r => r.seq)).toEqual([1, 2])
  })

  it('without a gap, sends a round per commit once the last one is done', async () => {
    const h = harness(0)
    h.pacer.add(1, [])
    h.pacer.add(2, [])
    h.endRound()
    await ticksUntil(() => h.sent.length === 2)
    expect(h.sent.map(r => r.seq)).toEqual([1, 2])
  })

  it('close() sends what is pending at once, and nothing after', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    const h = harness(1000)
    h.pacer.add(1, [])
    h.pacer.add(2, ['w!z'])
    const closed = h.pacer.close()
    h.endRound()
    await ticksUntil(() => h.sent.length === 2)
    h.endRound()
    await closed
    h.pacer.add(3, [])
    expect(h.sent).toEqual([{ seq: 1, keys: [] }, { seq: 2, keys: ['w!z'] }])
  })
})
