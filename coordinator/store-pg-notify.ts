/** What one notification round says: the highest seq committed, and the watched aux keys changed. */
export interface Notice {
  /** 0: no event. */
  seq: number
  keys: Set<string>
}

/** What the pacer needs: a clock (ms, monotonic) and a way to send one round of notifications. */
export interface NotifySink {
  send: (notice: Notice) => Promise<void>
  now?: () => number
}

/**
 * Paces a PostgreSQL store's notifications (NOTIFY after each commit, see
 * store-pg.ts): at most one round every `gapMs`, carrying everything the
 * commits meanwhile would have said — the highest seq (a reader reads
 * everything up to it) and the union of the changed keys. A round goes out
 * at once after a quiet spell; under load the next waits out the gap and
 * says what piled up. One round at a time; whatever a failed round said is
 * lost as a lost notification is (the readers' catch-up finds the events).
 *
 * Why: with several replicas every commit's notification woke every
 * replica's listener and cost its writer a round trip of its own, while a
 * reader reads the log at most every ANNOUNCE_GAP_MS anyway.
 */
export class NotifyPacer {
  readonly #sink: NotifySink
  readonly #gapMs: number
  readonly #now: () => number
  #seq = 0
  readonly #keys = new Set<string>()
  #sending: Promise<void> | undefined
  #lastSent = -Infinity
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor (sink: NotifySink, gapMs: number) {
    this.#sink = sink
    this.#gapMs = gapMs
    this.#now = sink.now ?? (() => performance.now())
  }

  /** A commit: its last event's seq (0 if none) and the watched keys it changed. */
  add (seq: number, keys: Iterable<string>): void {
    if (this.#closed) return
    this.#seq = Math.max(this.#seq, seq)
    for (const key of keys) this.#keys.add(key)
    this.#kick()
  }

  /** Sends what is pending at once (no gap) and waits for the round in flight; later add()s are dropped. */
  async close (): Promise<void> {
    this.#closed = true
    clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#sending
    if (this.#pending()) await this.#round()
  }

  #pending (): boolean {
    return this.#seq > 0 || this.#keys.size > 0
  }

  #kick (): void {
    if (this.#closed || this.#sending !== undefined || this.#timer !== undefined || !this.#pending()) return
    const wait = this.#lastSent + this.#gapMs - this.#now()
    if (wait > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined
        this.#kick()
      }, wait)
      return
    }
    const round = this.#round()
    this.#sending = round
    void round.finally(() => {
      this.#sending = undefined
      this.#kick()
    })
  }

  async #round (): Promise<void> {
    const notice: Notice = { seq: this.#seq, keys: new Set(this.#keys) }
    this.#seq = 0
    this.#keys.clear()
    this.#lastSent = this.#now()
    await this.#sink.send(notice).catch(() => {})
  }
}
