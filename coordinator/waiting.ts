import type { TransferRecord, WaitingReason } from './model.ts'
import type { TransferStore } from './store.ts'
import type { Clock } from './clock.ts'

export interface WaitingOptions {
  store: TransferStore
  clock: Clock
  isOnline: (agent: string) => boolean
  /** The agents a queued transfer needs online before it can start. */
  needs: (rec: TransferRecord) => string[]
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
}

/** Queued transfers are looked over at most this often: a read of the queue, not a write. */
export const WAITING_SCAN_MS = 1000
/** Records written per scan at most, so that a scan never holds the scheduler up for long; the rest follow a second later. */
const WRITES_PER_SCAN = 500

/**
 * Tells why a queued transfer does not start: `waiting` on its record (and a
 * `transfer.<id>.waiting` event) names the offline agent it waits for. The
 * queue is read at most once a second and a record is written only when its
 * reason changes, so a long queue behind one offline agent costs one write
 * per transfer when the agent goes away and one when it is back.
 */
export class WaitingTracker {
  private readonly opts: WaitingOptions
  private lastScan = -Infinity

  constructor (opts: WaitingOptions) {
    this.opts = opts
  }

  /**
   * Looks the queue over, unless it did less than WAITING_SCAN_MS ago.
   * Resolves with when it wants to look again (epoch ms): the end of that
   * interval when it skipped or had more to write, undefined when it is done.
   */
  async scan (): Promise<number | undefined> {
    const now = this.opts.clock.now()
    if (now - this.lastScan < WAITING_SCAN_MS) return this.lastScan + WAITING_SCAN_MS
    this.lastScan = now
    let more = false
    const { store } = this.opts
    const writes: Array<Promise<unknown>> = []
    for (const rec of store.inState('queued')) {
      const next = this.reason(rec)
      if (same(rec.waiting, next)) continue
      // Issued together, they share the store's group commit instead of one fsync each.
      if (writes.length === WRITES_PER_SCAN) { more = true; break }
      writes.push(store.update(rec.id, current => {
        // Scheduled or changed meanwhile: the write decides on the record as it is now.
        if (current.state !== 'queued' || same(current.waiting, next)) return undefined
        return { waiting: next }
      }, `transfer.${rec.id}.waiting`, next !== undefined ? { ...next } : { reason: null }).catch(err => {
        this.opts.log('could not record why a transfer waits', { transferId: rec.id, error: String(err) }, 'warn')
      }))
    }
    await Promise.all(writes)
    return more ? now + WAITING_SCAN_MS : undefined
  }

  private reason (rec: TransferRecord): WaitingReason | undefined {
    const offline = this.opts.needs(rec).find(a => !this.opts.isOnline(a))
    if (offline === undefined) return undefined
    const known = this.opts.store.getAgent(offline)
    return { reason: 'agent_offline', agent: offline, since: known?.lastSeenAt ?? new Date(this.opts.clock.now()).toISOString() }
  }
}

/** The same agent still offline is no change, whatever its record says about when it was seen. */
function same (a: WaitingReason | undefined, b: WaitingReason | undefined): boolean {
  return a?.reason === b?.reason && a?.agent === b?.agent
}
