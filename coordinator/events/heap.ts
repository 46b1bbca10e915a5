/** A binary min-heap: the outbox's deliveries by due time. */
export class MinHeap<T> {
  readonly #items: T[] = []
  readonly #before: (a: T, b: T) => boolean

  constructor (before: (a: T, b: T) => boolean) {
    this.#before = before
  }

  get size (): number { return this.#items.length }

  peek (): T | undefined { return this.#items[0] }

  push (item: T): void {
    const items = this.#items
    items.push(item)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.#before(items[i], items[parent])) break
      ;[items[i], items[parent]] = [items[parent], items[i]]
      i = parent
    }
  }

  pop (): T | undefined {
    const items = this.#items
    const top = items[0]
    const last = items.pop()
    if (items.length > 0 && last !== undefined) {
      items[0] = last
      let i = 0
      while (true) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < items.length && this.#before(items[l], items[m])) m = l
        if (r < items.length && this.#before(items[r], items[m])) m = r
        if (m === i) break
        ;[items[i], items[m]] = [items[m], items[i]]
        i = m
      }
    }
    return top
  }
}
