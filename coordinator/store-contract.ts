import type { AgentRecord, StoreEvent, TransferRecord, TransferState } from './model.ts'
import type { AgentDirectory } from './store-agents.ts'
import type { AuxArea } from './store-aux.ts'
import type { EventLog } from './store-event-log.ts'
import type { TransferRepository } from './store-transfers.ts'
import type { TreeFileLog } from './store-tree-files.ts'

/** Notifications, each once the write it reports is durable. */
export interface StoreEvents {
  transition: [rec: TransferRecord, from: TransferState]
  progress: [rec: TransferRecord]
  agent: [rec: AgentRecord]
  created: [rec: TransferRecord]
  removed: [rec: TransferRecord]
  /** Every event, once the write holding it has ended (after the specific notification above). */
  event: [ev: StoreEvent]
  /**
   * An aux record (a watched range: webhooks, callback secrets) changed,
   * possibly by another process on the same database; `*` when anything may
   * have (notifications were missed while the database was unreachable).
   * Readers reload it from the store. The LevelDB store, one process, never sends it.
   */
  auxChanged: [key: string]
}

export interface StoreNotifications {
  on<K extends keyof StoreEvents> (name: K, listener: (...args: StoreEvents[K]) => void): this
  off<K extends keyof StoreEvents> (name: K, listener: (...args: StoreEvents[K]) => void): this
}

export interface StoreOptions {
  /** At most one `transfer.<id>.progress` event per transfer per this many ms; 0 writes none. */
  progressEventMs?: number
}

/**
 * The coordinator's state, by owner: transfers (with their events), the event
 * log, agents, and the events unit's records. Implementations: LevelDB
 * (store.ts, embedded, the default) and PostgreSQL (store-pg.ts); both run
 * test/coordinator/store-conformance.ts. Tokens have their own store (tokens.ts).
 */
export interface CoordinatorStore extends TransferRepository, EventLog, AgentDirectory, AuxArea, TreeFileLog, StoreNotifications {
  close (): Promise<void>
}
