import type { StoreEvent } from '../model.ts'
import type { TransferStore } from '../store.ts'

export type EventListener = (event: StoreEvent) => void

/**
 * Tells live readers (the SSE stream, long polls) about each event once its
 * batch is written. The log itself stays the source: readers replay from it
 * and use the bus only to learn that there is more.
 */
export class EventBus {
  readonly store: TransferStore
  readonly #listeners = new Set<EventListener>()
  readonly #waiters = new Set<(more: boolean) => void>()
  readonly #onEvent: EventListener
  #closed = false

  constructor (store: TransferStore) {
    this.store = store
    this.#onEvent = event => {
      for (const listener of this.#listeners) {
        try {
          listener(event)
        } catch {
          // One broken reader must not keep the event from the others.
          this.#listeners.delete(listener)
        }
      }
      for (const wake of this.#waiters) wake(true)
      this.#waiters.clear()
    }
    store.on('event', this.#onEvent)
  }

  get closed (): boolean { return this.#closed }

  get listenerCount (): number { return this.#listeners.size }

  /** Calls `listener` with every event from now on; returns the function that stops it. */
  subscribe (listener: EventListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /**
   * Resolves true as soon as the log holds an event after `after`, false
   * when `ms` pass, the signal aborts or the bus closes first.
   */
  async waitForNewer (after: number, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.store.seq > after) return true
    if (this.#closed || ms <= 0 || signal?.aborted === true) return false
    return await new Promise<boolean>(resolve => {
      const done = (more: boolean): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        this.#waiters.delete(done)
        resolve(more)
      }
      const onAbort = (): void => done(false)
      const timer = setTimeout(() => done(false), ms)
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#waiters.add(done)
    })
  }

  /** Wakes every waiter (with false) and stops listening to the store. */
  close (): void {
    if (this.#closed) return
    this.#closed = true
    this.store.off('event', this.#onEvent)
    for (const wake of [...this.#waiters]) wake(false)
    this.#listeners.clear()
  }
}
