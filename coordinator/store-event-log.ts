import type { StoreEvent, TransferRecord } from './model.ts'

/**
 * The event log: what the change feed, SSE and webhooks read. Seqs are
 * strictly increasing and may skip numbers; a reader that has seen seq n
 * never later finds a new event below n (each implementation says how).
 */
export interface EventLog {
  /** The highest event seq this store has written or seen. */
  readonly seq: number
  /** Every event with a seq up to this one has been deleted by retention. */
  readonly trimmedThrough: number
  /** Events with seq > after, oldest first, from durable storage. */
  readEvents (after: number, limit: number): Promise<StoreEvent[]>
  /** An event that goes with no state change (e.g. `transfer.<id>.stalled`). */
  appendEvent (topic: string, tenant: string, data: Record<string, unknown>, opts?: { record?: TransferRecord, sync?: boolean, now?: number }): Promise<StoreEvent>
  /** Deletes the oldest events through `throughSeq`, at most `limit` of them; returns how far the log is now trimmed. */
  trimEvents (throughSeq: number, limit: number): Promise<number>
}
