/**
 * The simulator's event queue: a binary min-heap on (time, order of
 * scheduling), so that events at the same virtual moment run in the order
 * they were scheduled, as callbacks queued at one instant do in Node.
 */
export class EventQueue {
  private readonly times: number[] = []
  private readonly seqs: number[] = []
  private readonly fns: Array<() => void> = []
  private seq = 0
  now = 0

  get size (): number {
    return this.times.length
  }

  /** Runs `fn` `delay` ms (of virtual time) from now. */
  after (delay: number, fn: () => void): void {
    this.at(this.now + Math.max(0, delay), fn)
  }

  at (time: number, fn: () => void): void {
    this.times.push(time)
    this.seqs.push(this.seq++)
    this.fns.push(fn)
    this.up(this.times.length - 1)
  }

  /** Runs events in order until none is left, `until` says stop, or `limit` events ran; returns how many ran. */
  run (until: () => boolean, limit: number): number {
    let ran = 0
    while (this.times.length > 0 && ran < limit && !until()) {
      const [time, fn] = this.pop()
      this.now = time
      fn()
      ran++
    }
    return ran
  }

  private pop (): [number, () => void] {
    const top: [number, () => void] = [this.times[0], this.fns[0]]
    const last = this.times.length - 1
    this.swap(0, last)
    this.times.pop()
    this.seqs.pop()
    this.fns.pop()
    this.down(0)
    return top
  }

  private less (a: number, b: number): boolean {
    return this.times[a] < this.times[b] || (this.times[a] === this.times[b] && this.seqs[a] < this.seqs[b])
  }

  private swap (a: number, b: number): void {
    [this.times[a], this.times[b]] = [this.times[b], this.times[a]];
    [this.seqs[a], this.seqs[b]] = [this.seqs[b], this.seqs[a]];
    [this.fns[a], this.fns[b]] = [this.fns[b], this.fns[a]]
  }

  private up (i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(i, parent)) return
      this.swap(i, parent)
      i = parent
    }
  }

  private down (i: number): void {
    const n = this.times.length
    while (true) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < n && this.less(l, m)) m = l
      if (r < n && this.less(r, m)) m = r
      if (m === i) return
      this.swap(i, m)
      i = m
    }
  }
}
