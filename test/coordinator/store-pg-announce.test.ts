import { describe, expect, it, vi } from 'vitest'
import type { StoreEvent } from '../../coordinator/model.ts'
import { EventAnnouncer } from '../../coordinator/store-pg-announce.ts'
import type { AnnouncerOptions } from '../../coordinator/store-pg-announce.ts'

/**
 * The announcer's ordering on its own: an in-memory log stands for the
 * database, `visible` for what EVENTS_VISIBLE lets a reader see (the real
 * condition is covered by test/coordinator/store-pg.test.ts).
 */
function harness (opts: AnnouncerOptions = {}) {
  const log: StoreEvent[] = []
  let visibleThrough = 0
  let trimmed = 0
  const emitted: string[] = []
  let reads = 0
  const announcer = new EventAnnouncer({
    read: async (after, limit) => {
      reads++
      return {
        events: log.filter(e => e.seq > after && e.seq <= visibleThrough).slice(0, limit),
        follow: async () => (event: StoreEvent) => [() => { emitted.push(`foreign ${event.seq}`) }]
      }
    },
    trimmed: async () => trimmed,
    emit: event => { emitted.push(`own ${event.seq}`) }
  }, opts)
  return {
    announcer,
    emitted,
    reads: () => reads,
    write: (seq: number): StoreEvent => {
      const e = { seq, id: `ev_${seq}`, time: new Date(0).toISOString(), topic: `agent.a${seq}.online`, tenant: '*', data: {} }
      log.push(e)
      log.sort((a, b) => a.seq - b.seq)
      return e
    },
    show: (through: number) => { visibleThrough = through },
    trim: (through: number) => { trimmed = through; log.splice(0, log.length, ...log.filter(e => e.seq > through)) }
  }
}

describe('EventAnnouncer', () => {
  it('reads again as soon as another writer\'s notification arrives, not when its wait on the horizon ends', async () => {
    // Timers stand still: only the notification can end the wait.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    try {
      const h = harness()
      const own = h.write(2)
      h.announcer.committing([own])
      h.announcer.committed([own], false)
      // Seq 1, another writer's, still running: the pass reads nothing and waits.
      await ticksUntil(() => h.reads() > 0)
      h.write(1)
      h.show(2)
      h.announcer.heard(1)
      await ticksUntil(() => h.emitted.length === 2)
      expect(h.emitted).toEqual(['foreign 1', 'own 2'])
    } finally {
      vi.useRealTimers()
    }
  })

  it('announces its own clear commit without reading it back, after the writers\' own notifications', async () => {
    const h = harness()
    const events = [h.write(1), h.write(2)]
    h.show(2)
    h.announcer.committing(events)
    h.announcer.committed(events, true)
    // Not yet: a writer's 'created' or 'transition' comes first, on a promise tick.
    expect(h.emitted).toEqual([])
    await h.announcer.announced(2)
    expect(h.emitted).toEqual(['own 1', 'own 2'])
    expect(h.announcer.through).toBe(2)
    expect(h.reads()).toBe(0)
  })

  it('holds its own events back while a lower seq of another writer may still commit, then announces both in order', async () => {
    const h = harness()
    // Another writer holds seq 1 (not committed); this process commits 2, not clear.
    const own = h.write(2)
    h.announcer.committing([own])
    h.announcer.committed([own], false)
    let done = false
    const answered = h.announcer.announced(2).then(() => { done = true })
    // Nothing is visible while seq 1's transaction runs: the announcer reads again until it is.
    await waitFor(() => h.reads() >= 3)
    expect(done).toBe(false)
    expect(h.emitted).toEqual([])
    h.write(1)
    h.show(2)
    h.announcer.heard(1)
    await answered
    expect(h.emitted).toEqual(['foreign 1', 'own 2'])
    expect(h.announcer.through).toBe(2)
  })

  it('ignores its own notification and seqs it has announced, and announces another\'s once', async () => {
    const h = harness()
    const own = h.write(1)
    h.show(1)
    h.announcer.committing([own])
    h.announcer.heard(1)
    h.announcer.committed([own], true)
    await h.announcer.announced(1)
    h.write(2)
    h.show(2)
    h.announcer.heard(2)
    h.announcer.heard(2)
    h.announcer.heard(1)
    await waitFor(() => h.announcer.through === 2)
    expect(h.emitted).toEqual(['own 1', 'foreign 2'])
  })

  it('with a read gap, reads once for the notifications that arrive within it, and announces them all in order', async () => {
    // Timers stand still: the gap ends only when the test moves time on.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] })
    try {
      const h = harness({ readGapMs: 50 })
      h.write(1)
      h.show(1)
      h.announcer.heard(1)
      await ticksUntil(() => h.emitted.length === 1)
      expect(h.reads()).toBe(1)
      // Three more commits of other writers, each notified, within the gap: no read until it ends.
      for (const seq of [2, 3, 4]) {
        h.write(seq)
        h.show(seq)
        h.announcer.heard(seq)
        await ticksUntil(() => false)
      }
      expect(h.reads()).toBe(1)
      vi.advanceTimersByTime(50)
      await ticksUntil(() => h.emitted.length === 4)
      expect(h.reads()).toBe(2)
      expect(h.emitted).toEqual(['foreign 1', 'foreign 2', 'foreign 3', 'foreign 4'])
      // A writer waiting on the pause is answered when the announcer closes.
      h.write(5)
      h.show(5)
      h.announcer.heard(5)
      h.announcer.close()
      await ticksUntil(() => false)
      expect(h.reads()).toBe(2)
    } finally {
      vi.useRealTimers()
    }
  })

  it('moves past events that retention trimmed before it read them', async () => {
    const h = harness()
    h.write(1)
    h.write(2)
    h.trim(2)
    h.show(2)
    h.announcer.heard(2)
    await waitFor(() => h.announcer.through === 2)
    expect(h.emitted).toEqual([])
  })
})

/** Bounded: fails the test when the condition never comes. */
async function waitFor (cond: () => boolean): Promise<void> {
  for (let i = 0; i < 5000 && !cond(); i++) await new Promise(resolve => setTimeout(resolve, 1))
  expect(cond()).toBe(true)
}

/** Lets promise callbacks and I/O run (setImmediate is not faked), a bounded number of turns. */
async function ticksUntil (cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise(resolve => setImmediate(resolve))
}
