import type { ErrorInfo, TreeFileState } from '../mesh/index.ts'

/** One file of a tree transfer as its agent reported it: copied, skipped (with why) or failed (with its error). */
export interface TreeFileRow {
  path: string
  state: TreeFileState
  size: number
  reason?: string
  error?: ErrorInfo
}

export type { TreeFileState }

export interface TreeFileQuery {
  state?: TreeFileState
  /** The page after this path (the `next` of the page before). */
  after?: string
  limit: number
}

export interface TreeFilePage {
  items: TreeFileRow[]
  /** Present when more may follow: pass it as `after`. */
  next?: string
}

/**
 * A tree transfer's files, by path, kept apart from its record so that the
 * record stays small whatever the tree's size; removed with the transfer.
 * A later report of the same path (the next attempt) replaces the earlier.
 */
export interface TreeFileLog {
  putTreeFiles (id: string, rows: readonly TreeFileRow[]): Promise<void>
  listTreeFiles (id: string, query: TreeFileQuery): Promise<TreeFilePage>
}

/** Stored compactly: [state, size, reason or error], the path being the key. */
export type StoredTreeFile = [TreeFileState, number, string | ErrorInfo | null]

export function storedTreeFile (row: TreeFileRow): StoredTreeFile {
  return [row.state, row.size, row.error ?? row.reason ?? null]
}

export function treeFileRow (path: string, stored: StoredTreeFile): TreeFileRow {
  const [state, size, extra] = stored
  const row: TreeFileRow = { path, state, size }
  if (typeof extra === 'string') row.reason = extra
  else if (extra !== null) row.error = extra
  return row
}

/** A row inside a stored report (a chunk): [path, state, size, reason or error]. */
export type ChunkedTreeFile = [string, TreeFileState, number, string | ErrorInfo | null]

export function chunkedTreeFile (row: TreeFileRow): ChunkedTreeFile {
  return [row.path, row.state, row.size, row.error ?? row.reason ?? null]
}

/**
 * The per-path writes that replace stored reports, oldest report first, so a
 * later report of a path replaces the earlier one as it would have if each
 * row had been written on arrival.
 */
export function spreadChunks (chunks: ReadonlyArray<[string, ChunkedTreeFile[]]>, pathKey: (path: string) => string): Array<{ type: 'put', key: string, value: StoredTreeFile } | { type: 'del', key: string }> {
  const ops: Array<{ type: 'put', key: string, value: StoredTreeFile } | { type: 'del', key: string }> = []
  for (const [chunkKey, rows] of chunks) {
    for (const [path, state, size, extra] of rows) ops.push({ type: 'put', key: pathKey(path), value: [state, size, extra] })
    ops.push({ type: 'del', key: chunkKey })
  }
  return ops
}
