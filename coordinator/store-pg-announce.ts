import type { StoreEvent } from './model.ts'

/** Events read per query when following the log. */
const BATCH = 1000
/**
 * While committed events wait behind an older transaction still running
 * (EVENTS_VISIBLE), the announcer reads again after 1, 2, 4 … ms, at most
 * WAIT_MAX_MS apart: a group's transaction lasts a commit (a few ms) and a
 * transaction without events sends no notification when it ends.
 */
const WAIT_MAX_MS = 50
/** Empty reads before the announcer asks whether retention trimmed past it: a commit's wait (1 + 2 + 4 + 8 ms) is over by then. */
const TRIM_CHECK_AFTER = 4

/** The announcer's pacing. */
export interface AnnouncerOptions {
  /** Reads of the log start at least this far apart (ms); 0: as soon as asked (ANNOUNCE_GAP_MS in store-pg.ts). */
  readGapMs?: number
}

/** One read of the log, and how memory follows what of it another process wrote. */
export interface LogRead {
  /** Events after the cursor that readers may see (EVENTS_VISIBLE), oldest first. */
  events: StoreEvent[]
  /**
   * Makes memory follow those of `events` another process wrote (perhaps
   * none: called after every read); returns what to announce for each of
   * them, 'event' included.
   */
  follow: (foreign: StoreEvent[]) => Promise<(event: StoreEvent) => Array<() => void>>
}

/** What the announcer needs from its store. */
export interface AnnouncerSource {
  /**
   * Reads the log after `after`, at most `limit` events, with what following
   * them needs (in the same query if it can); `own`: seqs of this process's
   * events, which need nothing of that.
   */
  read: (after: number, limit: number, own: number[]) => Promise<LogRead>
  /** How far retention has trimmed the log (any process). */
  trimmed: () => Promise<number>
  /** Announces one of this process's events ('event'). */
  emit: (event: StoreEvent) => void
}

/**
 * Announces a PostgreSQL store's events in seq order, this process's and
 * other processes' alike, as readers may see them: after a seq has been
 * announced no lower one can still commit. Its cursor (`through`) is the
 * store's seq. One pass at a time; a wake-up during a pass makes another.
 */
export class EventAnnouncer {
  /** Every event up to this seq has been announced. */
  #through = 0
  /** The highest seq another process has announced (NOTIFY) and this one has not read yet. */
  #heard = 0
  /** This process's events above #through, by seq, from just before their commit: announced as they are, without reloading. */
  readonly #own = new Map<number, StoreEvent>()
  /** The highest seq this process has committed. */
  #ownCommitted = 0
  /** Writers waiting for their event to be announced. */
  readonly #waiters = new Set<{ seq: number, resolve: () => void }>()
  #running = false
  #again = false
  /** Ends the pass's wait on the horizon early: a notification says another transaction has ended. */
  #interrupt: (() => void) | undefined
  #closed = false
  readonly source: AnnouncerSource
  readonly #readGapMs: number
  /** When the last read started (performance.now()). */
  #lastRead = -Infinity
  /** Ends a pause between reads early: only close() does. */
  #endPause: (() => void) | undefined

  constructor (source: AnnouncerSource, opts: AnnouncerOptions = {}) {
    this.source = source
    this.#readGapMs = opts.readGapMs ?? 0
  }

  get through (): number { return this.#through }

  /** After (re)loading memory: everything up to `through` is in memory, the log reaches `last`. */
  reset (through: number, last: number): void {
    this.#through = through
    this.#heard = last
    this.#forgetThrough(through)
  }

  /** Another process committed events up to `seq` (its NOTIFY). */
  heard (seq: number): void {
    // This process's own notification: ownCommitted() said the same.
    if (!(seq > this.#through) || this.#own.has(seq)) return
    this.#heard = Math.max(this.#heard, seq)
    this.wake()
  }

  /** This process is about to commit these events (in seq order). */
  committing (events: StoreEvent[]): void {
    for (const e of events) this.#own.set(e.seq, e)
  }

  /** Their commit failed (or its outcome is unknown: then they are read as another's would be). */
  failed (events: StoreEvent[]): void {
    for (const e of events) this.#own.delete(e.seq)
  }

  /**
   * They committed. `clear`: the commit found no older transaction running
   * and no event between `through` and them, so they are announced without
   * being read back — on the next turn of the event loop, after their
   * writers' own notifications ('created', 'transition' …), as with a local
   * store.
   */
  committed (events: StoreEvent[], clear: boolean): void {
    if (events.length === 0) return
    const first = events[0].seq
    const last = events[events.length - 1].seq
    this.#ownCommitted = Math.max(this.#ownCommitted, last)
    if (clear) setImmediate(() => { this.#announceOwn(first, last) })
    else this.wake()
  }

  /** Resolves once the event with this seq (committed here) has been announced. */
  announced (seq: number): Promise<void> {
    if (seq <= this.#through || this.#closed) return Promise.resolve()
    return new Promise(resolve => { this.#waiters.add({ seq, resolve }) })
  }

  /** Writers still waiting are answered: nobody will announce their events here. */
  close (): void {
    this.#closed = true
    this.#interrupt?.()
    this.#endPause?.()
    this.#settle(true)
  }

  wake (): void {
    if (this.#closed) return
    if (this.#running) {
      this.#again = true
      this.#interrupt?.()
      return
    }
    this.#running = true
    this.#again = false
    this.#pass().catch(() => {
      // The next notification or commit tries again; a writer is not kept waiting on a database that fails.
      this.#settle(true)
    }).finally(() => {
      this.#running = false
      if (this.#again) this.wake()
    })
  }

  #announceOwn (first: number, last: number): void {
    // A pass got there first.
    if (this.#closed || this.#through >= first) return
    this.#through = last
    for (let seq = first; seq <= last; seq++) {
      const event = this.#own.get(seq)
      if (event === undefined) continue
      this.#own.delete(seq)
      this.source.emit(event)
    }
    this.#settle()
  }

  async #pass (): Promise<void> {
    for (let waits = 0; !this.#closed && Math.max(this.#heard, this.#ownCommitted) > this.#through;) {
      // Paced: what notifications and commits ask for meanwhile is read at once, in one query.
      const pause = this.#lastRead + this.#readGapMs - performance.now()
      if (pause > 0) {
        await this.#pause(pause)
        if (this.#closed) break
      }
      this.#again = false
      this.#lastRead = performance.now()
      const read = await this.source.read(this.#through, BATCH, [...this.#own.keys()])
      const events = read.events
      if (events.length === 0) {
        // No give-up: a transaction left open (an operator's psql session) holds the feed back as long as it
        // lasts, and ends without a notification when it wrote no event; reading every WAIT_MAX_MS costs little.
        waits++
        // Trimmed past the cursor: rare (retention keeps far more than a pass is behind), so asked only once a wait has lasted.
        if (waits > TRIM_CHECK_AFTER && await this.#skipTrimmed()) continue
        // An older transaction is still running: wait for it, or for the next wake-up (with 3 replicas
        // committing at once this is the common case, and a whole back-off step was latency every write paid).
        if (!this.#again) await this.#wait(Math.min(2 ** Math.min(waits - 1, 10), WAIT_MAX_MS))
        continue
      }
      waits = 0
      // #announceOwn may announce some meanwhile (here and while memory follows the others' below).
      const foreign = events.filter(e => e.seq > this.#through && !this.#own.has(e.seq))
      const announcementsOf = await read.follow(foreign)
      const announced: Array<() => void> = []
      for (const e of events) {
        if (e.seq <= this.#through) continue
        const own = this.#own.get(e.seq)
        if (own !== undefined) announced.push(() => { this.source.emit(own) })
        else announced.push(...announcementsOf(e))
        this.#own.delete(e.seq)
      }
      this.#through = Math.max(this.#through, events[events.length - 1].seq)
      for (const announce of announced) announce()
      this.#settle()
    }
  }

  async #wait (ms: number): Promise<void> {
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => { this.#interrupt = undefined; resolve() }, ms)
      this.#interrupt = () => {
        this.#interrupt = undefined
        clearTimeout(timer)
        resolve()
      }
    })
  }

  /** Waits between reads (readGapMs); a notification does not end it, close() does. */
  async #pause (ms: number): Promise<void> {
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => { this.#endPause = undefined; resolve() }, ms)
      this.#endPause = () => {
        this.#endPause = undefined
        clearTimeout(timer)
        resolve()
      }
    })
  }

  /** Retention trimmed past the cursor: what is pending there is gone, the cursor moves past it. */
  async #skipTrimmed (): Promise<boolean> {
    const trimmed = await this.source.trimmed()
    if (trimmed <= this.#through) return false
    this.#through = trimmed
    this.#forgetThrough(trimmed)
    return true
  }

  #forgetThrough (seq: number): void {
    for (const own of this.#own.keys()) if (own <= seq) this.#own.delete(own)
    this.#settle()
  }

  #settle (all = false): void {
    for (const w of this.#waiters) {
      if (!all && w.seq > this.#through) continue
      this.#waiters.delete(w)
      w.resolve()
    }
  }
}
