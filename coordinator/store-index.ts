import { TRANSFER_STATES } from './model.ts'
import type { TransferRecord, TransferState } from './model.ts'

export interface ListQuery {
  tenant?: string
  state?: TransferState
  agent?: string
  label?: { key: string, value: string }
  /** Text anywhere in the id, source, destinations, label values or last error (case-insensitive). */
  text?: string
  /** Only ids after this one in the page order (the `next` cursor of the previous page). */
  after?: string
  limit: number
  /** `asc` (the default): oldest first; `desc`: newest first. */
  order?: 'asc' | 'desc'
}

export interface ListPage {
  items: TransferRecord[]
  /** The cursor for the next page; absent on the last page. */
  next?: string
}

/** Priority descending, then id ascending (= creation order). */
function queueOrder (a: TransferRecord, b: TransferRecord): number {
  if (a.priority !== b.priority) return b.priority - a.priority
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/** First index in a sorted array whose element is not before `target`. */
function lowerBound<T> (items: readonly T[], target: T, compare: (a: T, b: T) => number): number {
  let lo = 0
  let hi = items.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (compare(items[mid], target) < 0) lo = mid + 1
    else hi = mid
  }
  return lo
}

const byString = (a: string, b: string): number => a < b ? -1 : a > b ? 1 : 0

/**
 * The in-memory view of every transfer. Records are treated as immutable:
 * a change puts a new object, and put() swaps it into every index that holds
 * the old one.
 *
 * The queue is kept sorted incrementally because the scheduler reads it on
 * every tick; re-sorting 100,000 records each time would cost more than the
 * decisions themselves. New transfers normally land at the end of their
 * priority band, so insertion is cheap.
 */
export class TransferIndex {
  readonly #byId = new Map<string, TransferRecord>()
  /** Every id, ascending: creation order, for cursor pagination. */
  readonly #ids: string[] = []
  readonly #byState = new Map<TransferState, Set<string>>(TRANSFER_STATES.map(s => [s, new Set()]))
  #queue: TransferRecord[] = []

  get size (): number { return this.#byId.size }

  get (id: string): TransferRecord | undefined {
    return this.#byId.get(id)
  }

  /** Fills an empty index at once (on open): one sort instead of 100,000 insertions. */
  load (records: Iterable<TransferRecord>): void {
    for (const rec of records) {
      this.#byId.set(rec.id, rec)
      this.#ids.push(rec.id)
      this.#byState.get(rec.state)?.add(rec.id)
    }
    this.#ids.sort(byString)
    this.#queue = this.inState('queued').sort(queueOrder)
  }

  put (rec: TransferRecord): void {
    const prev = this.#byId.get(rec.id)
    this.#byId.set(rec.id, rec)
    if (prev === undefined) {
      const last = this.#ids.at(-1)
      if (last === undefined || last < rec.id) this.#ids.push(rec.id)
      else this.#ids.splice(lowerBound(this.#ids, rec.id, byString), 0, rec.id)
    }
    if (prev?.state !== rec.state) {
      if (prev !== undefined) this.#byState.get(prev.state)?.delete(rec.id)
      this.#byState.get(rec.state)?.add(rec.id)
    }
    if (prev?.state === 'queued') {
      const at = lowerBound(this.#queue, prev, queueOrder)
      if (rec.state === 'queued' && rec.priority === prev.priority) {
        this.#queue[at] = rec
        return
      }
      this.#queue.splice(at, 1)
    }
    if (rec.state === 'queued') this.#queue.splice(lowerBound(this.#queue, rec, queueOrder), 0, rec)
  }

  delete (id: string): void {
    const prev = this.#byId.get(id)
    if (prev === undefined) return
    this.#byId.delete(id)
    this.#ids.splice(lowerBound(this.#ids, id, byString), 1)
    this.#byState.get(prev.state)?.delete(id)
    if (prev.state === 'queued') this.#queue.splice(lowerBound(this.#queue, prev, queueOrder), 1)
  }

  inState (state: TransferState): TransferRecord[] {
    const out: TransferRecord[] = []
    for (const id of this.#byState.get(state) ?? []) out.push(this.#byId.get(id) as TransferRecord)
    return out
  }

  countInState (state: TransferState): number {
    return this.#byState.get(state)?.size ?? 0
  }

  queued (): TransferRecord[] {
    return this.#queue.slice()
  }

  lastId (): string | undefined {
    return this.#ids.at(-1)
  }

  list (q: ListQuery): ListPage {
    const items: TransferRecord[] = []
    let more = false
    const text = q.text !== undefined ? textPattern(q.text) : undefined
    for (const id of this.#candidates(q)) {
      const rec = this.#byId.get(id) as TransferRecord
      if (!matches(rec, q, text)) continue
      if (items.length === q.limit) { more = true; break }
      items.push(rec)
    }
    const page: ListPage = { items }
    if (more && items.length > 0) page.next = items[items.length - 1].id
    return page
  }

  /** Ids to examine in page order: a small state set is sorted on its own rather than scanning every id. */
  * #candidates (q: ListQuery): Iterable<string> {
    const after = q.after
    const desc = q.order === 'desc'
    const set = q.state !== undefined ? this.#byState.get(q.state) : undefined
    if (set !== undefined && set.size * 8 < this.#ids.length) {
      const ids = after === undefined ? [...set] : [...set].filter(id => desc ? id < after : id > after)
      ids.sort(byString)
      yield * (desc ? ids.reverse() : ids)
      return
    }
    if (desc) {
      // From the newest down; `after` is the oldest id of the previous page.
      let j = after === undefined ? this.#ids.length - 1 : lowerBound(this.#ids, after, byString) - 1
      for (; j >= 0; j--) yield this.#ids[j]
      return
    }
    let i = 0
    if (after !== undefined) {
      i = lowerBound(this.#ids, after, byString)
      if (this.#ids[i] === after) i++
    }
    for (; i < this.#ids.length; i++) yield this.#ids[i]
  }
}

function matches (rec: TransferRecord, q: ListQuery, text: RegExp | undefined): boolean {
  if (q.tenant !== undefined && rec.tenant !== q.tenant) return false
  if (q.state !== undefined && rec.state !== q.state) return false
  if (q.agent !== undefined && !rec.agents.includes(q.agent)) return false
  if (q.label !== undefined && rec.labels[q.label.key] !== q.label.value) return false
  if (text !== undefined && !containsText(rec, text)) return false
  return true
}

/**
 * Text anywhere in the record: a scan of the records in memory, with no
 * index to keep up. The answer stays one page; the cost is a pass over the
 * records per request when few match.
 */
function containsText (rec: TransferRecord, re: RegExp): boolean {
  const has = (s: string | undefined): boolean => s !== undefined && re.test(s)
  return has(rec.id) || has(rec.source) || has(rec.destination) ||
    (rec.destinations ?? []).some(d => has(d.destination)) ||
    Object.values(rec.labels).some(has) ||
    has(rec.lastError?.code) || has(rec.lastError?.message)
}

/** Case-insensitive and literal: the text is escaped, not a pattern the caller writes. */
function textPattern (text: string): RegExp {
  return new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i')
}
