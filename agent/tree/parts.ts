import type { ObjectVersion } from '../../protocols/index.ts'
import type { JournalEntry, TreeFileCheckpoint } from '../journal.ts'

/** Files written one after another (a read batch's, or a lane's of large files): only the one written last journals its offsets. */
export interface Lane {
  /** The file whose bytes went to a writer last. */
  latest?: unknown
  /** The path this lane journaled last, dropped when it journals another. */
  journaled?: string
}

/**
 * The files of a tree being written, in its journal entry: one per lane (a
 * file's offset journaled while it is its lane's latest), and those an
 * earlier attempt left until the listing reaches them, so that a crash of
 * this attempt before then still resumes them.
 */
export class PartFiles {
  readonly #entry: JournalEntry
  readonly #put: (entry: JournalEntry) => Promise<void>
  readonly #parts = new Map<string, TreeFileCheckpoint>()

  constructor (entry: JournalEntry, put: (entry: JournalEntry) => Promise<void>) {
    this.#entry = entry
    this.#put = put
    // An entry an agent from before lanes wrote holds its one partial as treeFile.
    for (const cp of entry.treeParts ?? (entry.treeFile === undefined ? [] : [entry.treeFile])) this.#parts.set(cp.path, cp)
    delete entry.treeFile
    this.#sync()
  }

  /**
   * The listing reached `path`: the checkpoint an earlier attempt left for it
   * when it is still the version listed (kept until this attempt journals the
   * file again); one of another version is dropped with the next write.
   */
  take (path: string, version: ObjectVersion): TreeFileCheckpoint | undefined {
    const cp = this.#parts.get(path)
    if (cp === undefined) return undefined
    if (cp.version.size === version.size && cp.version.mtime === version.mtime) return cp
    this.#parts.delete(path)
    this.#sync()
    return undefined
  }

  /** A file the listing found done or unchanged: a checkpoint left for it is of no use (dropped with the next write). */
  forget (path: string): void {
    if (this.#parts.delete(path)) this.#sync()
  }

  /** A file's durable offset, for the lane writing it; the lane's file before it is no longer the partial one. */
  async journal (lane: Lane, cp: TreeFileCheckpoint): Promise<void> {
    if (lane.journaled !== undefined && lane.journaled !== cp.path) this.#parts.delete(lane.journaled)
    lane.journaled = cp.path
    this.#parts.set(cp.path, cp)
    this.#sync()
    await this.#put(this.#entry)
  }

  /** A file is at its name: no partial of it is left to resume. */
  async done (lane: Lane, path: string): Promise<void> {
    if (lane.journaled === path) lane.journaled = undefined
    if (!this.#parts.delete(path)) return
    this.#sync()
    await this.#put(this.#entry)
  }

  #sync (): void {
    if (this.#parts.size === 0) delete this.#entry.treeParts
    else this.#entry.treeParts = [...this.#parts.values()]
  }
}
