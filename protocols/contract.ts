/**
 * The protocol plug-in contract. A plug-in is a factory (`file({ volumes })`,
 * `random()`) returning a ProtocolPlugin for one URL scheme. The executor opens
 * a source plug-in and a destination plug-in and pipes bytes between them;
 * it never knows which protocol is on either end.
 *
 * Errors are the named classes of mesh/errors.ts (NotFoundError,
 * PermissionDeniedError, NoSpaceError, SourceChangedError, UnsupportedError…),
 * whose `retryable` flag the executor uses to classify a failure.
 */

import type { StaccatoError } from '../mesh/index.ts'

export interface Capabilities {
  read: boolean
  write: boolean
  /** Reads can start at an offset, and writes can continue a partial object from an offset. */
  resume: boolean
  /**
   * Set to false when reads resume but writes cannot continue from an offset
   * (an HTTP PUT cannot append): write() then accepts only offset 0 and the
   * executor restarts the destination from zero. Absent means the same as `resume`.
   */
  writeResume?: boolean
  list: boolean
  /** stat() can return a sha256 of the whole object without reading it through read(). */
  checksum: boolean
  /** openWriterAt() is offered: writes at any offset, in any order (pieces of a distribution). */
  writeAt?: boolean
}

/** What identifies one version of an object: if any of these changes, the object changed. */
export interface ObjectVersion {
  size: number
  /** Modification time in milliseconds since the epoch (0 when the protocol has none). */
  mtime: number
  etag?: string
}

export interface StatResult extends ObjectVersion {
  /** Hex sha256 of the whole object, when the protocol knows it without reading. */
  sha256?: string
}

export interface OpOptions {
  signal?: AbortSignal
}

export interface ReadOptions extends OpOptions {
  offset: number
  /** Bytes to read from offset; to the end of the object when absent. */
  length?: number
  /**
   * The version the caller saw at stat time. A plug-in that finds another
   * version (before or while reading) throws SourceChangedError rather than
   * returning bytes of a different object.
   */
  expect?: ObjectVersion
  /**
   * Called once, after the last chunk, with a whole-object digest computed by
   * the far end when the protocol provides one (the agent data protocol does):
   * a hex sha256 unless the plug-in was made for another algorithm.
   */
  onDigest?: (digest: string) => void
  /**
   * The caller is done with each chunk before it asks for the next (it hashes
   * and seals or copies it at once): the plug-in may read into the same few
   * buffers again instead of a new one per chunk. Plug-ins may ignore it.
   */
  reuseBuffers?: boolean
}

export interface WriteOptions extends OpOptions {
  /** Byte offset to continue from; 0 starts a new object. Needs capabilities.resume when > 0. */
  offset: number
  /** Final size when known, so a plug-in can preallocate or check free space up front. */
  size?: number
  /**
   * A stable key for this write (the transfer id), so that a later attempt
   * finds the same partial object to resume.
   */
  key: string
  /**
   * The source's modification time (epoch ms): a plug-in that can set it on
   * the object at commit does, so that a later run can compare the two by
   * size and mtime (rsync's quick check) instead of by their bytes.
   */
  mtime?: number
  /** Permission bits to give the object at commit, where the protocol has them. */
  mode?: number
  /**
   * Commit without making the rename durable: the caller syncs the directory
   * once for a group of files (`syncDirectory`), as a tree copy does.
   */
  deferDirectorySync?: boolean
}

/**
 * An object being written. Nothing is visible at the target until commit();
 * abort() removes the partial unless told to keep it for a later resume.
 */
export interface Writer {
  write(chunk: Uint8Array): Promise<void>
  /** Makes everything written so far durable; returns the durable length. */
  sync(): Promise<number>
  /** Makes the object durable and atomically visible at the target. */
  commit(): Promise<void>
  abort(opts?: { keepPartial?: boolean }): Promise<void>
  /**
   * Reads back the bytes kept from an earlier attempt (the first `offset`
   * bytes), so that a resumed transfer can verify and hash what it keeps.
   * A writer without it cannot resume with verification: the executor starts from zero.
   */
  readPartial?(opts?: OpOptions): AsyncIterable<Uint8Array>
}

export interface WriteAtOptions extends OpOptions {
  /** A stable key (the distribution id), so that a later writer finds the same partial object. */
  key: string
  /** The object's final size: it is sized (and its space checked) up front. */
  size: number
  /**
   * Keep the partial object an earlier writer with this key left (its bytes
   * stay where they were written); without it, or when there is none, the
   * writer starts from an empty object of `size` bytes.
   */
  resume: boolean
  /** The source's modification time (epoch ms), set on the object at commit, as WriteOptions.mtime. */
  mtime?: number
  /** Permission bits given to the object at commit, as WriteOptions.mode. */
  mode?: number
}

/**
 * An object written at arbitrary offsets, as rclone's OpenWriterAt or
 * Kraken's piece storage: nothing is visible at the target until commit().
 * Calls on different ranges may run concurrently.
 */
export interface WriterAt {
  /** Whether an earlier writer's partial object was kept (resume was asked and one was found). */
  readonly resumed: boolean
  /** Writes `chunks` one after the other from `offset`; the range must lie within the size. */
  writeAt(offset: number, chunks: Uint8Array[]): Promise<void>
  /** Reads back `length` bytes from `offset`; also after commit(), until abort() releases the object. */
  readAt(offset: number, length: number): Promise<Uint8Array>
  /**
   * Reads back between 1 and `length` bytes from `offset` for a caller that
   * reads the object once in order (a multi-stream copy's ordered hash):
   * the bytes may sit in memory the writer reuses, and stay valid only until
   * the second call after this one (one read may run ahead while the caller
   * uses the bytes of the one before). Absent: readAt.
   */
  readBack?(offset: number, length: number): Promise<Uint8Array>
  /**
   * A sequential way into one range from `offset`, for a caller that writes
   * it in order (a stream of a multi-stream copy): the plug-in may stage its
   * bytes (to write them past the page cache) until flush(). Absent: writeAt.
   */
  openRange?(offset: number): Promise<RangeOutput>
  /** Makes everything written so far durable (not bytes still staged in a RangeOutput: flush it first). */
  sync(): Promise<void>
  /** Makes the object durable and atomically visible at the target: the object written, whatever its partial's name holds now. */
  commit(): Promise<void>
  /** Releases the writer; removes the partial object unless told to keep it (after commit it only releases). */
  abort(opts?: { keepPartial?: boolean }): Promise<void>
}

/** One range of a WriterAt, written in order from its start. */
export interface RangeOutput {
  /** Hands over the next bytes: they may stay staged until flush(); the chunk may be reused once this resolves. */
  write(chunk: Uint8Array): Promise<void>
  /** Puts every byte handed over into the object (readable by readAt; durable only after WriterAt.sync()). */
  flush(): Promise<void>
  /** Releases the staging memory; bytes not flushed are dropped. */
  close(): Promise<void>
}

export interface Entry {
  path: string
  size: number
  mtime: number
  type: 'file' | 'directory'
}

/** One entry of a directory tree, by its '/'-separated path inside the tree. */
export interface TreeEntry {
  path: string
  type: 'file' | 'directory' | 'skipped'
  size: number
  /** Epoch ms. */
  mtime: number
  /** Permission bits. */
  mode: number
  /** Why a skipped entry is not copied (a symbolic link, a special file). */
  reason?: string
  /** A symbolic link's target (readlink), for a tree that copies links; the walk itself lists every link as skipped. */
  target?: string
}

/** A small file given whole, for putFiles. */
export interface WholeFile {
  url: URL
  data: Uint8Array
  /** Set on the file (epoch ms). */
  mtime?: number
  /** Permission bits. */
  mode?: number
}

export interface PutFilesOptions extends OpOptions {
  key: string
  /**
   * The renames are not synced before this returns: each file is at its
   * name, its bytes durable, its name not yet. The caller makes the names
   * durable later (`syncDirectories` of a next call, which may have no
   * files) and records nothing as finished before that.
   */
  deferRenameSync?: boolean
  /**
   * Directories (file URLs) where an earlier call renamed files: durable
   * when this call returns, synced with this call's own data (one sync).
   */
  syncDirectories?: URL[]
  /**
   * Called once this call's files are in their partials, before its sync:
   * it may wait (for an earlier call's renames, so that this sync makes
   * them durable too) and gives more directories to sync as
   * `syncDirectories`. The partials of one group are then written while
   * the group before it is synced and renamed.
   */
  beforeSync?: () => Promise<URL[]>
}

/** A small file read whole by readFiles, or why it could not be. */
export type WholeRead = { data: Uint8Array, version: StatResult, /** Its real path on the host, for a caller that confines it further (a tree). */ real: string, /** Its digest, when asked for (`algorithm`). */ digest?: string } | { error: StaccatoError }

export interface ProtocolPlugin {
  readonly scheme: string
  readonly capabilities: Capabilities
  stat(url: URL, opts?: OpOptions): Promise<StatResult>
  read(url: URL, opts: ReadOptions): AsyncIterable<Uint8Array>
  write(url: URL, opts: WriteOptions): Promise<Writer>
  list?(url: URL, opts?: OpOptions): AsyncIterable<Entry>
  /** Every entry under a directory, depth first, with bounded memory (plug-ins with directories). */
  walk?(url: URL, opts?: OpOptions): AsyncIterable<TreeEntry>
  /**
   * Creates a directory and its parents; one that exists is fine. True when
   * this call created the directory itself (it was empty then): a tree copy
   * into it has no destination to compare.
   */
  makeDirectory?(url: URL, opts?: OpOptions & { mode?: number }): Promise<boolean>
  /**
   * Removes one entry: a file, a symbolic link (the link, never what it
   * points to) or an empty directory; false when a directory is not empty.
   * For a mirror's extra entries (plug-ins with directories).
   */
  remove?(url: URL, opts?: OpOptions): Promise<boolean>
  /**
   * Makes `url` a symbolic link to `target` (a tree copied with `links:
   * 'copy'`), replacing a file or link there atomically and durably; false
   * when the same link is there already. With `dryRun`, changes nothing and
   * answers whether it would make it. The target is written as given: the
   * caller has checked that it stays inside the tree.
   */
  makeLink?(url: URL, target: string, opts?: OpOptions & { dryRun?: boolean }): Promise<boolean>
  /** Makes the renames done in a directory durable (after commits with `deferDirectorySync`). */
  syncDirectory?(url: URL, opts?: OpOptions): Promise<void>
  /** The stat of each object, or its error, as stat() gives them; for many small files at once (a tree's quick check). */
  statMany?(urls: URL[], opts?: OpOptions): Promise<Array<StatResult | StaccatoError>>
  /** Small files read whole, each checked as read() checks it (with `expect`), for a tree's holder; each hashed with `algorithm` if given. */
  readFiles?(files: Array<{ url: URL, expect?: ObjectVersion }>, opts?: OpOptions & { algorithm?: 'sha256' | 'blake3' }): Promise<WholeRead[]>
  /**
   * A group of small files written whole with write()'s rules (a partial
   * under `key`, nothing at a target name before its bytes are durable),
   * made durable together; when it returns, every file without an error in
   * its slot is at its name, durably (unless `deferRenameSync`). A failed
   * file leaves no partial.
   */
  putFiles?(files: WholeFile[], opts: PutFilesOptions): Promise<Array<StaccatoError | undefined>>
  /**
   * Readies what readFiles ('read') or putFiles ('write') runs on (the file
   * plug-in's threads), so that the first call does not wait for it: for a
   * tree's holder as its listing starts, for its receiver as its copy does.
   */
  warmUp?(what: 'read' | 'write'): void
  /** Present when capabilities.writeAt is true. */
  openWriterAt?(url: URL, opts: WriteAtOptions): Promise<WriterAt>
  /** Frees resources (sockets, handles) the plug-in holds. */
  close?(): Promise<void>
}
