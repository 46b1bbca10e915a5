import { Worker } from 'node:worker_threads'
import { InternalError } from '../mesh/index.ts'
import { renamePartials, writePartials } from './group-io.ts'
import type { IoError, PartialJob, RenameJob, Written } from './group-io.ts'
import { readPack } from './read-io.ts'
import type { Algorithm, ReadJob, ReadOut } from './read-io.ts'

export type GroupRequest = { id: number, op: 'write', jobs: PartialJob[], bytes: Uint8Array } | { id: number, op: 'rename', jobs: RenameJob[] } |
{ id: number, op: 'read', jobs: ReadJob[], algorithm?: Algorithm }
type Answer = { id: number, out: unknown } | { id: number, failed: string }

interface Waiter { resolve: (out: unknown) => void, reject: (err: Error) => void, inline: () => unknown }

/**
 * One thread for the system calls of small files' groups (create, write,
 * rename: ~10 a file, and a create on a busy ext4 costs 100-300 µs of kernel
 * time, measured with perf in bench:tree): the event loop goes on receiving
 * and hashing the next files meanwhile, on the other core. Requests are
 * answered in order; where no thread starts (before it is online), the
 * same calls run inline.
 */
class GroupThread {
  #worker: Worker | undefined
  #online = false
  #broken = false
  #next = 0
  readonly #waiting = new Map<number, Waiter>()

  /** Starts the thread now, without a request: its start (a new isolate loading its modules) is 60-150 ms on the 2-core VM. */
  warm (): void {
    this.#start()
  }

  async write (jobs: PartialJob[], bytes: Uint8Array): Promise<Written[]> {
    return await this.#run({ id: 0, op: 'write', jobs, bytes }, () => writePartials(jobs, bytes)) as Written[]
  }

  async rename (jobs: RenameJob[]): Promise<Array<IoError | undefined>> {
    return await this.#run({ id: 0, op: 'rename', jobs }, () => renamePartials(jobs)) as Array<IoError | undefined>
  }

  async read (jobs: ReadJob[], algorithm?: Algorithm): Promise<{ bytes: Uint8Array, out: ReadOut[] }> {
    const inline = (): { bytes: Uint8Array, out: ReadOut[] } => readPack(jobs, algorithm)
    try {
      return await this.#run({ id: 0, op: 'read', jobs, algorithm }, inline) as { bytes: Uint8Array, out: ReadOut[] }
    } catch {
      // The thread ended with the pack out: a read changes nothing, so it is done again here.
      return inline()
    }
  }

  async #run (req: GroupRequest, inline: () => unknown): Promise<unknown> {
    const w = this.#start()
    if (w === undefined) return inline()
    const id = this.#next++
    const answer = new Promise((resolve, reject) => { this.#waiting.set(id, { resolve, reject, inline }) })
    // The thread keeps the process alive only while a request is out.
    w.ref()
    // The group's bytes move to the thread, not copied; copied until it is online (they may yet be written here).
    w.postMessage({ ...req, id }, req.op === 'write' && this.#online ? [req.bytes.buffer as ArrayBuffer] : [])
    return await answer
  }

  #start (): Worker | undefined {
    if (this.#broken) return undefined
    if (this.#worker !== undefined) return this.#worker
    let w: Worker
    try {
      w = new Worker(new URL('./group-worker.ts', import.meta.url))
    } catch {
      this.#broken = true
      return undefined
    }
    this.#worker = w
    this.#online = false
    w.unref()
    w.on('online', () => { this.#online = true })
    w.on('message', (m: Answer) => {
      const waiter = this.#waiting.get(m.id)
      this.#waiting.delete(m.id)
      if (this.#waiting.size === 0) w.unref()
      if (waiter === undefined) return
      if ('failed' in m) waiter.reject(new InternalError(`the group thread failed: ${m.failed}`))
      else {
        answered++
        waiter.resolve(m.out)
      }
    })
    const gone = (err?: unknown): void => {
      if (this.#worker !== w) return
      this.#worker = undefined
      const waiting = [...this.#waiting.values()]
      this.#waiting.clear()
      if (!this.#online) {
        // It never ran a request: they run here, and so does every next one (this runtime cannot start it).
        this.#broken = true
        for (const x of waiting) {
          try { x.resolve(x.inline()) } catch (e) { x.reject(e as Error) }
        }
        return
      }
      // Died with requests out: what they did is unknown, so they fail (the attempt is retried); the next request starts a new thread.
      for (const x of waiting) x.reject(new InternalError(`the group thread ended: ${String(err ?? 'exit')}`))
    }
    w.on('error', gone)
    w.on('exit', () => { gone() })
    return w
  }
}

const thread = new GroupThread()
/** A tree's holder reads in a thread of its own: an agent that also receives does not queue its packs behind its writes. */
const reader = new GroupThread()

/** Requests the thread answered (not run inline): what a test checks. */
let answered = 0

export function threadAnswers (): number {
  return answered
}

/** Starts the read thread ('read') or the group thread ('write') ahead of its first request. */
export function warmThread (which: 'read' | 'write'): void {
  (which === 'read' ? reader : thread).warm()
}

/** Reads each file whole into one buffer (moved here, not copied), checked and hashed, in the read thread. */
export async function readInThread (jobs: ReadJob[], algorithm?: Algorithm): Promise<{ bytes: Uint8Array, out: ReadOut[] }> {
  return await reader.read(jobs, algorithm)
}

/** Writes each file to its partial and leaves it open, in the group thread. */
export async function writeInThread (jobs: PartialJob[], bytes: Uint8Array): Promise<Written[]> {
  return await thread.write(jobs, bytes)
}

/** Renames each partial onto its target (by identity) and closes it, in the group thread. */
export async function renameInThread (jobs: RenameJob[]): Promise<Array<IoError | undefined>> {
  return await thread.rename(jobs)
}
