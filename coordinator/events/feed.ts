import { StaccatoError } from '../../mesh/index.ts'
import type { StoreEvent } from '../model.ts'
import type { TransferStore } from '../store.ts'
import type { TopicMatcher } from './topics.ts'
import { canSee } from './visibility.ts'
import type { Viewer } from './visibility.ts'

/** The cursor points before the oldest event kept: events after it were deleted by retention. */
export class CursorExpiredError extends StaccatoError {
  /** The seq of the oldest event kept; resume with after = oldest - 1 (and expect a gap). */
  readonly oldest: number
  constructor (oldest: number, options?: ErrorOptions) {
    // Clients read `oldest` from the body; the message says it too, for those that only keep messages.
    super('cursor_expired', `the oldest event kept is ${oldest}: earlier ones were deleted by retention; go on from after=${oldest - 1} (the gap cannot be filled)`, false, options)
    this.oldest = oldest
  }
}

export interface FeedQuery {
  after: number
  limit: number
  viewer: Viewer
  matches: TopicMatcher
}

export interface FeedPage {
  items: StoreEvent[]
  /** The cursor to pass as `after` next: the last event looked at, shown or not. */
  next: number
  /** Nothing newer was in the log when the page was read. */
  caughtUp: boolean
}

// Events read from the log per step, and at most per page when a filter hides most of them.
const STEP = 500
const SCAN_CAP = 20_000

/** Throws CursorExpiredError when `after` is below what retention kept. */
export function checkCursor (store: TransferStore, after: number): void {
  if (after < store.trimmedThrough) throw new CursorExpiredError(store.trimmedThrough + 1)
}

/**
 * Events after a cursor that the viewer may see and the topics match,
 * oldest first. Hidden events still move the cursor, so a filtered reader
 * does not scan them again; a page stops after SCAN_CAP events looked at,
 * possibly empty, with a cursor that has moved on.
 */
export async function readFeed (store: TransferStore, q: FeedQuery): Promise<FeedPage> {
  checkCursor(store, q.after)
  const items: StoreEvent[] = []
  let cursor = q.after
  let scanned = 0
  while (scanned < SCAN_CAP) {
    const batch = await store.readEvents(cursor, STEP)
    if (batch.length === 0) return { items, next: cursor, caughtUp: true }
    // A gap means retention trimmed past the cursor while we read, or seqs skipped after an OS crash (the store never reuses them).
    if (batch[0].seq !== cursor + 1) checkCursor(store, cursor)
    for (const ev of batch) {
      cursor = ev.seq
      scanned++
      if (canSee(q.viewer, ev) && q.matches(ev.topic)) {
        items.push(ev)
        if (items.length === q.limit) return { items, next: cursor, caughtUp: cursor >= store.seq }
      }
    }
    if (batch.length < STEP) return { items, next: cursor, caughtUp: true }
  }
  return { items, next: cursor, caughtUp: false }
}
