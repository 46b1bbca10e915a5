import type { TransferStore } from '../store.ts'
import { pause } from './jobs.ts'
import type { Job, JobResult } from './jobs.ts'

export interface RetentionConfig {
  /** Events older than this are deleted. */
  maxAgeMs: number
  /** At most this many events are kept. */
  maxCount: number
  intervalMs: number
}

// Small enough that a write waiting behind one trim batch waits a few milliseconds.
const BATCH = 500

/**
 * Deletes the oldest events while they are beyond either limit. The log is
 * trimmed from its start only, so what is kept is always gap-free and a
 * cursor is either fully served or answered with `cursor_expired`.
 */
export async function enforceRetention (store: TransferStore, config: RetentionConfig, signal: AbortSignal, now = Date.now()): Promise<number> {
  const countCut = store.seq - config.maxCount
  const ageCut = now - config.maxAgeMs
  const start = store.trimmedThrough
  while (true) {
    const batch = await store.readEvents(store.trimmedThrough, BATCH)
    let through = 0
    for (const ev of batch) {
      if (ev.seq > countCut && Date.parse(ev.time) >= ageCut) break
      through = ev.seq
    }
    if (through === 0) break
    await store.trimEvents(through, BATCH)
    await pause(signal)
  }
  return store.trimmedThrough - start
}

export function retentionJob (store: TransferStore, config: RetentionConfig, more?: (signal: AbortSignal) => Promise<JobResult>): Job {
  return {
    name: 'retention',
    intervalMs: config.intervalMs,
    async run (signal) {
      const deleted = await enforceRetention(store, config, signal)
      const extra = await more?.(signal)
      const result = { ...(deleted > 0 ? { eventsDeleted: deleted, trimmedThrough: store.trimmedThrough } : {}), ...extra }
      return Object.keys(result).length > 0 ? result : undefined
    }
  }
}
