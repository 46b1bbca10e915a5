import type { TransferInput, TransferRecord, TransferState } from './model.ts'
import type { ListPage, ListQuery } from './store-index.ts'
import type { ProgressReport } from './store-progress.ts'

export interface CreateOptions { tenant: string, idempotencyKey?: string, now?: number }
export interface TransitionOptions { from?: TransferState[], now?: number }

/**
 * Transfers and their idempotency keys. Every write that changes a record
 * writes its event (`transfer.<id>.…`) in the same atomic write: a crash keeps
 * both or neither. Reads are synchronous: every implementation keeps the
 * records in memory (the scheduler reads the whole queue on every pass).
 */
export interface TransferRepository {
  readonly size: number
  create (input: TransferInput, opts: CreateOptions): Promise<{ record: TransferRecord, created: boolean }>
  get (id: string): TransferRecord | undefined
  list (q: ListQuery): ListPage
  transition (id: string, to: TransferState, patch?: Partial<TransferRecord>, opts?: TransitionOptions): Promise<TransferRecord>
  /**
   * Changes a record without changing its state, with an event on `topic`.
   * `change` runs in the write itself; returning undefined writes nothing and
   * resolves with undefined (a change that must happen once is decided there).
   */
  update (id: string, change: (prev: TransferRecord) => Pick<Partial<TransferRecord>, 'destinations' | 'manifest' | 'waiting'> | undefined, topic: string, data: Record<string, unknown>, opts?: { now?: number }): Promise<TransferRecord | undefined>
  /** Progress from an agent; not durable at once (losing the last second of it on a crash is harmless). */
  setProgress (id: string, report: ProgressReport, opts?: { now?: number }): Promise<void>
  /** Deletes a finished transfer; its idempotency key may then be used again. */
  remove (id: string, opts?: { now?: number }): Promise<void>
  inState (state: TransferState): TransferRecord[]
  countInState (state: TransferState): number
  /** Queued transfers by priority (highest first), then creation order. */
  queuedInOrder (): TransferRecord[]
}
