import type { TransferStore } from '../store.ts'
import { pause } from './jobs.ts'
import type { Job, Log } from './jobs.ts'

export interface StalledConfig {
  /** An active transfer without progress for this long is stalled. */
  afterMs: number
  intervalMs: number
}

const BATCH = 200

/**
 * Finds active transfers whose progress has not moved for `afterMs` and
 * writes `transfer.<id>.stalled` once per stall: again only after progress
 * moved and stopped once more. It reports; dispatch and the agent decide
 * what to do about it. Of coordinator replicas only the leader runs it
 * (`leading`): each would otherwise report every stall once.
 */
export function stalledJob (store: TransferStore, config: StalledConfig, log: Log, leading: () => boolean = () => true): Job {
  // transfer id → the progress timestamp it was reported stalled at.
  const reported = new Map<string, string>()
  return {
    name: 'stalled-transfers',
    intervalMs: config.intervalMs,
    async run (signal) {
      if (!leading()) return undefined
      const now = Date.now()
      const active = store.inState('active')
      const stillActive = new Set<string>()
      let stalled = 0
      for (let i = 0; i < active.length; i++) {
        if (i > 0 && i % BATCH === 0) await pause(signal)
        const seen = store.get(active[i].id)
        if (seen?.state !== 'active') continue
        stillActive.add(seen.id)
        const since = seen.progress.updatedAt
        const idleMs = now - Date.parse(since)
        if (idleMs < config.afterMs || reported.get(seen.id) === since) continue
        await store.appendEvent(`transfer.${seen.id}.stalled`, seen.tenant, {
          since, idleMs, bytesDone: seen.progress.bytesDone, attempt: seen.attempt, ...(seen.executor !== undefined ? { agent: seen.executor } : {})
        }, { record: seen, now })
        reported.set(seen.id, since)
        stalled++
        log('warn', 'transfer stalled', { transferId: seen.id, agent: seen.executor, since, idleMs })
      }
      for (const id of reported.keys()) if (!stillActive.has(id)) reported.delete(id)
      return stalled > 0 ? { stalled, active: active.length } : undefined
    }
  }
}
