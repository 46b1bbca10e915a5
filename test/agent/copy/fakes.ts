import type { Clock } from '../../../agent/copy/clock.ts'
import type { ExecutorJournal } from '../../../agent/executor.ts'
import type { JournalEntry } from '../../../agent/journal.ts'
import type { ObjectVersion, ProtocolPlugin, ReadOptions } from '../../../protocols/index.ts'
import mem from '../../fixtures/plugins/mem.ts'

/** A clock that moves only when the test says so. */
export class FakeClock implements Clock {
  private t = 0
  private readonly timers: Array<{ at: number, every?: number, fire: () => void }> = []

  now = (): number => this.t

  every = (ms: number, fn: () => void): () => void => {
    const timer = { at: this.t + ms, every: ms, fire: fn }
    this.timers.push(timer)
    return () => { this.drop(timer) }
  }

  sleep = async (ms: number, signal?: AbortSignal): Promise<void> => {
    signal?.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const timer = { at: this.t + ms, fire: resolve }
      this.timers.push(timer)
      signal?.addEventListener('abort', () => { this.drop(timer); reject(signal.reason) }, { once: true })
    })
  }

  /** Timers still set (an interval counts until it is cancelled). */
  get pending (): number {
    return this.timers.length
  }

  /** Moves time on, firing every timer due on the way, in order. */
  advance (ms: number): void {
    const end = this.t + ms
    for (let i = 0; i < 100_000; i++) {
      const due = this.timers.filter(x => x.at <= end).sort((a, b) => a.at - b.at)[0]
      if (due === undefined) break
      this.t = due.at
      if (due.every !== undefined) due.at += due.every
      else this.drop(due)
      due.fire()
    }
    this.t = end
  }

  private drop (timer: object): void {
    const i = this.timers.indexOf(timer as never)
    if (i >= 0) this.timers.splice(i, 1)
  }
}

/** The journal's contract in memory: what a LevelDB journal would keep, copied as it would be serialized. */
export class MemJournal implements ExecutorJournal {
  readonly entries = new Map<string, JournalEntry>()
  /** Every offset committed, in order. */
  readonly commits: number[] = []

  async get (id: string): Promise<JournalEntry | undefined> {
    const e = this.entries.get(id)
    return e === undefined ? undefined : structuredClone(e)
  }

  async put (entry: JournalEntry): Promise<void> {
    this.entries.set(entry.transferId, JSON.parse(JSON.stringify(entry)) as JournalEntry)
  }

  async commitOffset (entry: JournalEntry, offset: number): Promise<void> {
    entry.durableOffset = offset
    this.commits.push(offset)
    await this.put(entry)
  }

  /** Finished files of trees, by `transferId NUL path`. */
  readonly treeFiles = new Map<string, ObjectVersion>()

  async remove (id: string): Promise<void> {
    this.entries.delete(id)
    for (const k of this.treeFiles.keys()) if (k.startsWith(`${id}\u0000`)) this.treeFiles.delete(k)
  }

  async putTreeFiles (id: string, files: ReadonlyArray<{ path: string, version: ObjectVersion }>): Promise<void> {
    for (const f of files) this.treeFiles.set(`${id}\u0000${f.path}`, { size: f.version.size, mtime: f.version.mtime })
  }

  async treeFilesDone (id: string, paths: readonly string[]): Promise<Array<ObjectVersion | undefined>> {
    return paths.map(p => this.treeFiles.get(`${id}\u0000${p}`))
  }

  async hasTreeFiles (id: string): Promise<boolean> {
    return [...this.treeFiles.keys()].some(k => k.startsWith(`${id}\u0000`))
  }

  async all (): Promise<JournalEntry[]> {
    return [...this.entries.values()].map(e => structuredClone(e))
  }
}

/** Lets pending promise callbacks and I/O callbacks run; bounded, for conditions that need a few turns. */
export async function until (cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 10_000 && !cond(); i++) await new Promise(resolve => setImmediate(resolve))
  if (!cond()) throw new Error(`never happened: ${what}`)
}

export interface Tap {
  /** Offsets that reads started at. */
  reads: number[]
  /** Called for each chunk with its offset in the object; may delay, replace or throw. */
  onChunk?: (at: number, chunk: Uint8Array, opts: ReadOptions) => Promise<Uint8Array> | Uint8Array
  /** Called after the last chunk with what the source says the object's digest is. */
  digest?: () => string | undefined
}

/** The mem plug-in with a tap on its reads: the fault injection these tests compose in. */
export function tapped (inner: ProtocolPlugin, tap: Tap): ProtocolPlugin {
  return {
    ...inner,
    async * read (url, opts) {
      tap.reads.push(opts.offset)
      let at = opts.offset
      for await (const chunk of inner.read(url, opts)) {
        yield tap.onChunk === undefined ? chunk : await tap.onChunk(at, chunk, opts)
        at += chunk.byteLength
      }
      const d = tap.digest?.()
      if (d !== undefined) opts.onDigest?.(d)
    }
  }
}

export async function putObject (plugin: ProtocolPlugin, href: string, bytes: Uint8Array): Promise<void> {
  const w = await plugin.write(new URL(href), { offset: 0, key: 'seed' })
  await w.write(bytes)
  await w.commit()
}

export async function getObject (plugin: ProtocolPlugin, href: string): Promise<Buffer> {
  const chunks: Uint8Array[] = []
  for await (const c of plugin.read(new URL(href), { offset: 0 })) chunks.push(c)
  return Buffer.concat(chunks)
}

export { mem }
