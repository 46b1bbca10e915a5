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
