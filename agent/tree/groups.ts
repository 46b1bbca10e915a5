import { StaccatoError } from '../../mesh/index.ts'
import type { TreeEntry } from '../../mesh/index.ts'
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
 * Writes a tree's small files a group at a time through putFiles, groups in
 * the order they are given (groups of every read batch, in order).
 *
 * The order that keeps a crash safe with one sync per group: a group's data
 * is synced, then its partials renamed, and those renames are made durable
 * by the NEXT group's data sync (putFiles's `beforeSync`: one syncfs covers
 * both), or by finish() for the last group. Only after that sync are the
 * group's files journaled finished and reported done. So nothing is at a
 * target name before its bytes are durable, and nothing is journaled before
 * its name is; a crash leaves at most two groups at their names unjournaled
 * (the one renamed and the one being synced), which the next attempt finds
 * in place by the sync check or copies again.
 *
 * A group's partials are written while the group before it is synced and
 * renamed (the write thread would otherwise wait on each sync, a third of a
 * group's time in bench:tree); its own sync waits for those renames.
 */
export class GroupWriter {
  readonly #sink: GroupSink
  /** The last group's renames done (or failed): what the next group's sync waits for. Never rejects. */
  #renamesDone: Promise<void> = Promise.resolve()
  /** The renames of the group before the last: the next group's partials are written only then. Never rejects. */
  #olderRenamesDone: Promise<void> = Promise.resolve()
  /** Groups' journaling and reports, one after another in order. Never rejects. */
  #reported: Promise<void> = Promise.resolve()
  /** At their names, not yet durably: journaled once the next sync returns. */
  #renamed: GroupFile[] = []

  constructor (sink: GroupSink) {
    this.#sink = sink
  }

  /**
   * Settles once the group is written (its files at their names, or failed)
   * and the group before it journaled and reported; may be called again
   * before it settles (the next group's partials are then written at once).
   */
  async write (group: GroupFile[]): Promise<void> {
    const prev = this.#renamesDone
    // Two groups out at most, whatever the callers do: each holds a descriptor per file until its renames.
    const older = this.#olderRenamesDone
    this.#olderRenamesDone = prev
    let before: GroupFile[] | undefined
    const beforeSync = async (): Promise<URL[]> => {
      await prev
      before = this.#renamed
      this.#renamed = []
      return directoriesOf(before)
    }
    const put = older.then(async () => await this.#sink.putFiles(group.map(g => g.file), { key: this.#sink.key, signal: this.#sink.signal, deferRenameSync: true, beforeSync }))
    const renamed = put.then(errors => {
      for (let i = 0; i < group.length; i++) {
        const err = errors[i]
        if (err !== undefined) this.#sink.failed(group[i].entry.path, err)
        else this.#renamed.push(group[i])
      }
    }, () => {
      // Not made durable by this call's sync: the next call's (or finish's) takes them again.
      if (before !== undefined) this.#renamed = [...before, ...this.#renamed]
    })
    // A group that failed before its sync leaves the next to wait on the one before it.
    this.#renamesDone = prev.then(async () => { await renamed })
    const reported = this.#reported.then(async () => {
      await put
      // A putFiles that never called beforeSync synced none of the earlier renames: reporting them done would be a lie.
      if (before === undefined) throw new StaccatoError('internal', 'the plug-in\'s putFiles returned without calling beforeSync: the files renamed before it are not known durable', false)
      if (before.length === 0) return
      await this.#sink.journal(before.map(({ entry: e }) => ({ path: e.path, version: { size: e.size, mtime: e.mtime } })))
      for (const g of before) await this.#sink.done(g.entry)
    })
    // The next group's report waits for this one, not for its success: a failed group fails its own caller.
    this.#reported = reported.catch(() => {})
    await reported
  }

  /** Makes the last group's renames durable and journals it: every file written is then finished. */
  async finish (): Promise<void> {
    await this.#renamesDone
    await this.#reported
    if (this.#renamed.length > 0) await this.write([])
  }
}

/** One URL per directory of the files, not per file: keyed by the href up to its name (a URL is costly to build). */
function directoriesOf (files: GroupFile[]): URL[] {
  const dirs = new Map<string, URL>()
  for (const g of files) {
    const href = g.file.url.href
    const key = href.slice(0, href.lastIndexOf('/') + 1)
    if (!dirs.has(key)) dirs.set(key, new URL('.', g.file.url))
  }
  return [...dirs.values()]
}
