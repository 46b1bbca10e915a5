/** A record as a write left it; `null` when the write deleted it. */
interface Staged<R> { rec: R | null }

interface Pending { ticket: number, owner: unknown, apply: () => void, key?: string, staged?: Staged<unknown> }

/**
 * Writes run before they commit (a group commit collects them), so a store
 * keeps two views of its records: the committed one, which every reader
 * (REST, lists, the scheduler) sees, and this one, the changes of writes that
 * ran but have not committed yet, which only the next writes see (a
 * transition checks the state the writes before it left). A crash can take
 * back only what is here, so no reader ever sees what a crash takes back.
 *
 * A change is staged with a ticket (where its write stands in the commit
 * order) and a function that makes it committed; commit(ticket) runs those
 * functions, in write order, once everything up to the ticket is durable.
 */
export class WriteAhead<R> {
  readonly #staged = new Map<string, Staged<R>>()
  #pending: Pending[] = []

  /** The record as every write so far left it: the staged one, else `committed`. */
  read (key: string, committed: R | undefined): R | undefined {
    const staged = this.#staged.get(key)
    return staged === undefined ? committed : staged.rec ?? undefined
  }

  /** A write changed `key` (null: deleted it); `apply` makes the change committed. */
  stage (key: string, rec: R | null, ticket: number, apply: () => void, owner?: unknown): void {
    const staged: Staged<R> = { rec }
    this.#staged.set(key, staged)
    this.#pending.push({ ticket, owner, apply, key, staged })
  }

  /** Something else to make committed with the write (the store's seq). */
  then (ticket: number, apply: () => void, owner?: unknown): void {
    this.#pending.push({ ticket, owner, apply })
  }

  /**
   * Everything staged up to `ticket` has committed, except the writes whose
   * owner is in `refused` (the database left them out): their changes are
   * dropped.
   */
  commit (ticket: number, refused?: ReadonlySet<unknown>): void {
    let n = 0
    for (; n < this.#pending.length && this.#pending[n].ticket <= ticket; n++) {
      const { owner, apply, key, staged } = this.#pending[n]
      if (refused === undefined || !refused.has(owner)) apply()
      if (key !== undefined && this.#staged.get(key) === staged) this.#staged.delete(key)
    }
    if (n > 0) this.#pending = this.#pending.slice(n)
  }

  /** Forgets every staged change: memory was reloaded from what is durable. */
  clear (): void {
    this.#staged.clear()
    this.#pending = []
  }
}
