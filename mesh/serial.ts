/**
 * Runs tasks one at a time, in the order they were handed in: the mutex the
 * store, the token store, writers, rate limits and swarm peers need so that
 * writes, sends and token grants do not interleave.
 */
export class Serial {
  #tail: Promise<unknown> = Promise.resolve()

  /** Runs `task` after every earlier one has settled; its result or failure goes to this caller only. */
  run<T> (task: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(task)
    // The failure is the caller's (returned above); the queue only waits for it to settle, so a failed task does not stop the next.
    this.#tail = run.catch(() => {})
    return run
  }

  /** Resolves once every task handed in so far has settled. */
  async idle (): Promise<void> {
    await this.#tail
  }
}
