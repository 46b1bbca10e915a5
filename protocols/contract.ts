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
   * the far end when the protocol provides one (the agent data protocol does).
   */
  onDigest?: (sha256: string) => void
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

export interface Entry {
  path: string
  size: number
  mtime: number
  type: 'file' | 'directory'
}

export interface ProtocolPlugin {
  readonly scheme: string
  readonly capabilities: Capabilities
  stat(url: URL, opts?: OpOptions): Promise<StatResult>
  read(url: URL, opts: ReadOptions): AsyncIterable<Uint8Array>
  write(url: URL, opts: WriteOptions): Promise<Writer>
  list?(url: URL, opts?: OpOptions): AsyncIterable<Entry>
  /** Frees resources (sockets, handles) the plug-in holds. */
  close?(): Promise<void>
}
