import { Level } from 'level'
import type { ObjectVersion } from '../protocols/index.ts'
import type { ChecksumMode, ErrorInfo, Manifest } from '../mesh/index.ts'

/**
 * A new entry for an attempt at a job: no version known yet, nothing durable.
 * Every way of running a job (a copy, several streams, a tree, an image, a
 * bare outcome) journals one; `fields` are what it knows on top.
 */
export function entryForJob (job: { transferId: string, attempt: number, source: string, destination: string }, fields: Partial<JournalEntry> = {}): JournalEntry {
  return { transferId: job.transferId, attempt: job.attempt, source: job.source, destination: job.destination, version: { size: 0, mtime: 0 }, durableOffset: 0, updatedAt: Date.now(), ...fields }
}

/** What the agent knows about one transfer it runs, kept across crashes and reboots. */
export interface JournalEntry {
  transferId: string
  attempt: number
  source: string
  destination: string
  /** The source version the kept bytes came from; another version means start again from zero. */
  version: ObjectVersion
  /** Bytes of the partial object known to be on disk (after sync). */
  durableOffset: number
  /** The transfer's checksum mode, which prefixDigest is in (sha256 when absent). */
  checksumMode?: ChecksumMode
  /** Digest of the first durableOffset bytes, to verify the kept prefix before resuming (none in checksum mode none). */
  prefixDigest?: string
  /** A tree transfer: the files being written (one per stream of large files), so that the next attempt resumes each from its offset. */
  treeParts?: TreeFileCheckpoint[]
  /** What an agent from before several streams of large files journaled: its one file being written (read, never written). */
  treeFile?: TreeFileCheckpoint
  /**
   * A multi-stream copy: its byte ranges, each with its own durable offset.
   * durableOffset stays what it means for one stream, a durable prefix
   * without a gap (the first range's), so that an agent that knows nothing
   * of ranges resumes this partial correctly or from zero. Absent for a
   * single-stream copy.
   */
  ranges?: RangeCheckpoint[]
  /** Set once the transfer ended, until the coordinator has acknowledged the report. */
  outcome?: { outcome: 'succeeded' | 'failed', sha256?: string, blake3?: string, error?: ErrorInfo, bytesDone: number, bytesTotal?: number, files?: { total: number, done: number, skipped: number, failed: number } }
  updatedAt: number
}

/** One file of a tree, part written: its path in the tree, the version listed, its durable offset and the digest before it. */
export interface TreeFileCheckpoint {
  path: string
  version: ObjectVersion
  durableOffset: number
  prefixDigest?: string
}

/** One byte range [start, end) of a multi-stream copy, of which the first `done` bytes are durable. */
export interface RangeCheckpoint {
  start: number
  end: number
  done: number
}

/** What a destination of a distribution keeps: which pieces are verified and synced to its partial file. */
export interface SwarmEntry {
  distributionId: string
  destination: string
  manifestSha256: string
  /** Base64 bitfield of pieces that are verified and durable. */
  have: string
  /**
   * Set once this destination finished (the file verified and renamed into
   * place, or failed), until the coordinator has acknowledged the report: a
   * restarted agent reports it instead of fetching the pieces again.
   */
  outcome?: { outcome: 'succeeded' | 'failed', sha256?: string, error?: ErrorInfo }
}

/** A NUL after the transfer's id: no path holds one, so a transfer's files are one key range. */
function treeFileKey (transferId: string, path: string): string {
  return `${transferId}\u0000${path}`
}

function treeFilesRange (transferId: string): { gte: string, lt: string } {
  return { gte: `${transferId}\u0000`, lt: `${transferId}\u0001` }
}

export interface JournalOptions {
  /** Told of each entry left out because its value does not parse. */
  onCorrupt?: (key: string, error: Error) => void
}

/**
 * The agent's journal (LevelDB). commitOffset is only called after the data
 * up to that offset was synced by the destination plug-in, so the offset it
 * records is always a prefix that survives a power cut.
 *
 * An entry whose value does not parse reads as absent: the journal only lets
 * an agent resume and report late, so losing one entry costs a restart from
 * zero, where failing on it would keep the agent from registering at all.
 */
export class Journal {
  private readonly root: Level<string, unknown>
  private readonly db
  /** Manifests by source version, so a second distribution of an image does not hash it again. */
  readonly manifests
  private readonly swarms
  /** Files of a tree that are at their names and durable, by transfer and path: what a resumed tree skips. */
  private readonly treeFiles
  private readonly onCorrupt: (key: string, error: Error) => void

  private constructor (root: Level<string, unknown>, opts: JournalOptions) {
    this.root = root
    this.onCorrupt = opts.onCorrupt ?? (() => {})
    // Stored as JSON, read as text and parsed here, so that one bad value does not fail a whole listing.
    this.db = root.sublevel<string, string>('transfers', { valueEncoding: 'utf8' })
    this.manifests = root.sublevel<string, Manifest>('manifests', { valueEncoding: 'json' })
    this.swarms = root.sublevel<string, string>('swarms', { valueEncoding: 'utf8' })
    this.treeFiles = root.sublevel<string, string>('tree-files', { valueEncoding: 'utf8' })
  }

  static async open (dir: string, opts: JournalOptions = {}): Promise<Journal> {
    const root = new Level<string, unknown>(dir, { valueEncoding: 'json' })
    await root.open()
    return new Journal(root, opts)
  }

  private parse<T> (key: string, raw: string | undefined): T | undefined {
    if (raw === undefined) return undefined
    try {
      return JSON.parse(raw) as T
    } catch (err) {
      this.onCorrupt(key, err as Error)
      return undefined
    }
  }

  private async list<T> (sublevel: typeof this.db): Promise<T[]> {
    return (await sublevel.iterator().all()).flatMap(([key, raw]) => {
      const value = this.parse<T>(key, raw)
      return value === undefined ? [] : [value]
    })
  }

  async get (transferId: string): Promise<JournalEntry | undefined> {
    return this.parse(transferId, await this.db.get(transferId))
  }

  async put (entry: JournalEntry): Promise<void> {
    // Through the root's batch: sublevel put() has no `sync` option, and the offset must be on disk.
    await this.root.batch([{ type: 'put', sublevel: this.db, key: entry.transferId, value: JSON.stringify({ ...entry, updatedAt: Date.now() }) }], { sync: true })
  }

  async commitOffset (entry: JournalEntry, offset: number): Promise<void> {
    entry.durableOffset = offset
    await this.put(entry)
  }

  async remove (transferId: string): Promise<void> {
    // The tree's files first: a crash in between leaves the entry, whose next removal clears nothing more.
    await this.treeFiles.clear(treeFilesRange(transferId))
    await this.root.batch([{ type: 'del', sublevel: this.db, key: transferId }], { sync: true })
  }

  /** Files of a tree now at their names, durably: journaled in one synced write, with the source version each came from. */
  async putTreeFiles (transferId: string, files: ReadonlyArray<{ path: string, version: ObjectVersion }>): Promise<void> {
    if (files.length === 0) return
    await this.root.batch(files.map(f => ({ type: 'put' as const, sublevel: this.treeFiles, key: treeFileKey(transferId, f.path), value: JSON.stringify([f.version.size, f.version.mtime]) })), { sync: true })
  }

  /** The source version each path was finished from (undefined: not finished), in the order asked. */
  async treeFilesDone (transferId: string, paths: readonly string[]): Promise<Array<ObjectVersion | undefined>> {
    if (paths.length === 0) return []
    const raw = await this.treeFiles.getMany(paths.map(p => treeFileKey(transferId, p)))
    return raw.map((r, i) => {
      const v = this.parse<[number, number]>(treeFileKey(transferId, paths[i]), r)
      return Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'number' ? { size: v[0], mtime: v[1] } : undefined
    })
  }

  /** Whether any file of this tree was journaled finished: a first attempt then costs no lookup per file. */
  async hasTreeFiles (transferId: string): Promise<boolean> {
    return (await this.treeFiles.keys({ ...treeFilesRange(transferId), limit: 1 }).all()).length > 0
  }

  async all (): Promise<JournalEntry[]> {
    return await this.list(this.db)
  }

  async putSwarm (entry: SwarmEntry): Promise<void> {
    await this.root.batch([{ type: 'put', sublevel: this.swarms, key: entry.distributionId, value: JSON.stringify(entry) }], { sync: true })
  }

  async getSwarm (distributionId: string): Promise<SwarmEntry | undefined> {
    return this.parse(distributionId, await this.swarms.get(distributionId))
  }

  async allSwarms (): Promise<SwarmEntry[]> {
    return await this.list(this.swarms)
  }

  async removeSwarm (distributionId: string): Promise<void> {
    await this.root.batch([{ type: 'del', sublevel: this.swarms, key: distributionId }], { sync: true })
  }

  async close (): Promise<void> {
    await this.root.close()
  }
}
