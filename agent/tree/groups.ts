import type { StaccatoError, TreeEntry } from '../../mesh/index.ts'
import type { ProtocolPlugin, WholeFile } from '../../protocols/index.ts'

/** A small file received whole and checked, waiting for its group to be written. */
export interface GroupFile { entry: TreeEntry, file: WholeFile }

/** What the group writer needs from the tree copy around it. */
export interface GroupSink {
  putFiles: NonNullable<ProtocolPlugin['putFiles']>
  /** The transfer: the partials' key. */
  key: string
  signal: AbortSignal
  /** Journals files as finished (durable at their names). */
  journal: (files: Array<{ path: string, version: { size: number, mtime: number } }>) => Promise<void>
  failed: (path: string, err: StaccatoError) => void
  /** A file finished: counted and listed for the coordinator, after it is journaled. */
  done: (entry: TreeEntry) => Promise<void>
}

/**
 * Writes a tree's small files a group at a time through putFiles, one group
 * after another (groups of every read batch, in order).
 *
 * The order that keeps a crash safe with one sync per group: a group's data
 * is synced, then its partials renamed, and those renames are made durable
 * by the NEXT group's data sync (putFiles's `syncDirectories`: one syncfs
 * covers both), or by finish() for the last group. Only after that sync are
 * the group's files journaled finished and reported done. So nothing is at a
 * target name before its bytes are durable, and nothing is journaled before
 * its name is; a crash leaves at most two groups at their names unjournaled
 * (the one renamed and the one being written), which the next attempt finds
 * in place by the sync check or copies again.
 */
export class GroupWriter {
  readonly #sink: GroupSink
  /** The write under way: one putFiles at a time, in order. */
  #chain: Promise<void> = Promise.resolve()
  /** At their names, not yet durably: journaled once the next sync returns. */
  #renamed: GroupFile[] = []

  constructor (sink: GroupSink) {
    this.#sink = sink
  }

  /** Settles once the group is written (its files at their names, or failed); the one before it is then journaled. */
  async write (group: GroupFile[]): Promise<void> {
    await this.#then(async () => {
      const errors = await this.#put(group.map(g => g.file))
      for (let i = 0; i < group.length; i++) {
        const err = errors[i]
        if (err !== undefined) this.#sink.failed(group[i].entry.path, err)
        else this.#renamed.push(group[i])
      }
    })
  }

  /** Makes the last group's renames durable and journals it: every file written is then finished. */
  async finish (): Promise<void> {
    await this.#then(async () => { if (this.#renamed.length > 0) await this.#put([]) })
  }

  async #then (step: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(step)
    // The next step waits for this one, not for its success: a failed group fails its own caller.
    this.#chain = run.catch(() => {})
    await run
  }

  /** putFiles, whose sync also makes the renames before it durable: those files are then finished. */
  async #put (files: WholeFile[]): Promise<Array<StaccatoError | undefined>> {
    const before = this.#renamed
    const dirs = new Map<string, URL>()
    for (const g of before) {
      // One URL per directory, not per file: keyed by the href up to its name (a URL is costly to build).
      const href = g.file.url.href
      const key = href.slice(0, href.lastIndexOf('/') + 1)
      if (!dirs.has(key)) dirs.set(key, new URL('.', g.file.url))
    }
    const errors = await this.#sink.putFiles(files, { key: this.#sink.key, signal: this.#sink.signal, deferRenameSync: true, syncDirectories: [...dirs.values()] })
    if (before.length > 0) {
      this.#renamed = []
      await this.#sink.journal(before.map(({ entry: e }) => ({ path: e.path, version: { size: e.size, mtime: e.mtime } })))
      for (const g of before) await this.#sink.done(g.entry)
    }
    return errors
  }
}
