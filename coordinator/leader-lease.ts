import { EventEmitter } from 'node:events'

export interface LeaseEvents {
  /** Leadership changed: true when this process now leads, false when it stopped. */
  change: [leader: boolean]
}

/**
 * Which replica runs the scheduler and dispatch. Exactly one process leads
 * at a time; a process that loses the lease hears `change(false)` before
 * another can lead, or has its writes refused (each implementation says how
 * it is fenced). Implementations: soleLease (one coordinator, embedded
 * store) and pgLeaderLease (leader-pg.ts, replicas on one PostgreSQL).
 */
export interface LeaderLease {
  readonly leader: boolean
  /** Starts competing; resolves once the first attempt has been made. */
  start (): Promise<void>
  /** Gives the lease up (another replica may take it at once) and stops competing. */
  stop (): Promise<void>
  on (name: 'change', listener: (leader: boolean) => void): this
  off (name: 'change', listener: (leader: boolean) => void): this
}

/** A coordinator alone on its store always leads. */
export function soleLease (): LeaderLease {
  const lease = new (class extends EventEmitter<LeaseEvents> {
    leader = false
    async start (): Promise<void> {
      if (this.leader) return
      this.leader = true
      this.emit('change', true)
    }

    async stop (): Promise<void> {
      if (!this.leader) return
      this.leader = false
      this.emit('change', false)
    }
  })()
  return lease
}
