import { minimatch } from 'minimatch'
import type { SyncMode } from '../../mesh/index.ts'
import type { ObjectVersion } from '../../protocols/index.ts'
import { sameSizeAndMtime } from '../copy/destination.ts'
import { sameVersion } from '../copy/resume.ts'

export interface TreeFilter {
  include?: readonly string[]
  exclude?: readonly string[]
}

/**
 * Which entries of a tree are copied, by their path inside it ('a/b.txt').
 * A pattern without a '/' matches a name at any depth ('*.tmp'), one with a
 * '/' matches the whole path, as rsync's and rclone's filters do. An
 * excluded directory is not entered; `include` selects files only, so that
 * `--include '*.jpg'` still descends into every directory.
 */
export function treeSelector (filter: TreeFilter): (path: string, isDirectory: boolean) => boolean {
  const opts = { dot: true, matchBase: true }
  const exclude = (filter.exclude ?? []).map(p => new minimatch.Minimatch(p, opts))
  const include = (filter.include ?? []).map(p => new minimatch.Minimatch(p, opts))
  return (path, isDirectory) => {
    if (exclude.some(m => m.match(path))) return false
    if (isDirectory || include.length === 0) return true
    return include.some(m => m.match(path))
  }
}

/** The default for trees: rsync's and rclone's quick check. */
export const DEFAULT_TREE_SYNC: SyncMode = 'mtime'

/**
 * Whether a symbolic link at `path` (inside the tree, /-separated) pointing
 * to `target` is copied as a link (`links: 'copy'`): only when its target is
 * relative and, resolved from the link's directory by names alone, stays
 * inside the tree — as rsync's --safe-links. An absolute target names the
 * source host's own paths, which mean something else or nothing at the
 * destination; one that climbs out of the tree would point out of the
 * destination's tree too. Lexical on purpose: nothing on either host is
 * followed to decide it.
 */
export function linkDecision (path: string, target: string): { copy: true } | { copy: false, reason: string } {
  if (target.startsWith('/')) return { copy: false, reason: 'symbolic link to an absolute path (not copied: it would name the destination host\'s own files)' }
  const at = path.split('/').slice(0, -1)
  for (const name of target.split('/')) {
    if (name === '' || name === '.') continue
    if (name !== '..') at.push(name)
    else if (at.pop() === undefined) return { copy: false, reason: 'symbolic link out of the tree (not copied)' }
  }
  return { copy: true }
}

/**
 * Whether one file of a tree is copied, by Globus's sync levels: `none`
 * copies all, `exists` skips what is there, `size` what has the same size,
 * `mtime` the same size and mtime; `checksum` skips only once the sha256 of
 * both ends agree, so a same-size file needs that comparison first.
 */
export function syncDecision (mode: SyncMode, source: ObjectVersion, there: ObjectVersion | undefined): 'copy' | 'skip' | 'compare-checksums' {
  if (there === undefined || mode === 'none') return 'copy'
  switch (mode) {
    case 'exists': return 'skip'
    case 'size': return source.size === there.size ? 'skip' : 'copy'
    case 'mtime': return sameSizeAndMtime(source, there) ? 'skip' : 'copy'
    case 'checksum': return source.size === there.size ? 'compare-checksums' : 'copy'
  }
}

/**
 * A mirror's verdict on one entry the destination holds, walked depth first:
 * `extra` (not in the source and selected: removed), `keep` (in the source,
 * or not selected: a file the globs leave out is not the mirror's to remove,
 * as rsync's --delete without --delete-excluded), `skip-below` (an excluded
 * directory: left whole, not entered).
 */
export function extraDecision (keep: (path: string, isDirectory: boolean) => boolean, inSource: (path: string) => boolean, path: string, isDirectory: boolean): 'extra' | 'keep' | 'skip-below' {
  if (!keep(path, isDirectory)) return isDirectory ? 'skip-below' : 'keep'
  return inSource(path) ? 'keep' : 'extra'
}

/**
 * Files up to this size go whole through the small-file path: the holder
 * reads them with one call (it already read files up to 256 KiB whole while
 * checking them), the receiver keeps them in memory and writes them in
 * groups. 256 files of this size in a batch keep at most 64 MiB in memory,
 * as BATCH_BYTES allows for any batch.
 */
export const SMALL_FILE_BYTES = 256 * 1024

/** A file goes the small-file way when it is small and starts at zero (a resumed partial goes through the writer, which reads its prefix back). */
export function carriedWhole (size: number, offset: number): boolean {
  return offset === 0 && size <= SMALL_FILE_BYTES
}

/**
 * A group of small files is written (and synced twice: its data, then its
 * renames) when it holds this many files or bytes. A whole batch (TREE_BATCH
 * files): fewer syncs, each a journal commit; the next batch is received
 * while this one's group is written, so nothing waits on it.
 */
export const GROUP_FILES = 256
export const GROUP_BYTES = 8 * 1024 * 1024

export function groupFull (files: number, bytes: number): boolean {
  return files >= GROUP_FILES || bytes >= GROUP_BYTES
}

/**
 * A file an earlier attempt journaled finished is skipped when the source is
 * still the version it was copied from and the destination still holds a file
 * of its size (a file removed or truncated since is copied again).
 */
export function finishedAlready (finished: ObjectVersion | undefined, source: ObjectVersion, there: ObjectVersion | undefined): boolean {
  return finished !== undefined && sameVersion(finished, source) && there !== undefined && there.size === source.size
}

/**
 * A read request's files are kept under this many bytes of JSON: half the
 * wire's 1 MiB frame limit (mesh/wire.ts), the rest left to the ticket (up to
 * 16 KiB) and the request's other fields. Each file counts as requestBytes():
 * a bound, not a measure, so that 1,024 files of long or odd names (a path
 * of 4,096 characters, newlines) still make one frame.
 */
export const READ_REQUEST_BYTES = 512 * 1024

/**
 * A file's bytes in a read request at most: 6 bytes a UTF-16 unit of its
 * path (JSON's \u escape of a control character is the longest a unit gets;
 * UTF-8 takes at most 3) and 128 for its field names, offset and version.
 */
export function requestBytes (path: string): number {
  return path.length * 6 + 128
}

/** A large file: at least one of the file plug-in's 1 MiB reads. */
export const LARGE_FILE_BYTES = 1024 * 1024

/**
 * Files of at least LARGE_FILE_BYTES go in read batches of their own: one
 * request for many of them (no round trip and no new connection per file),
 * on the holder's direct data socket, while small files keep theirs.
 */
export function largeLane (size: number): boolean {
  return size >= LARGE_FILE_BYTES
}

/**
 * A batch of large files is sent once it holds this many bytes (or
 * TREE_BATCH files): a round trip and a data connection per GiB cost well
 * under 1 % of its time, and what a batch holds is streamed to its files,
 * never kept in memory.
 */
export const LARGE_BATCH_BYTES = 1024 * 1024 * 1024

/**
 * Files finished (renamed into place) are journaled, after a sync of their
 * directories, each time they hold this many bytes, and at a batch's end:
 * a crash then redoes at most this much finished work, as a whole batch of
 * large files did when a batch held at most 64 MiB.
 */
export const FINISHED_JOURNAL_BYTES = 64 * 1024 * 1024

/**
 * Large files of a tree carried at once, each on its own read batch and data
 * connection, when the agent's configuration does not say (--tree-streams).
 * One stream is bound by the receiver's one thread waiting on each chunk in
 * turn (decrypt, hash, write); two keep it busy while the other waits. The
 * value is measured with bench:tree on a 2-core host (docs/benchmarks.md #15).
 */
export const DEFAULT_TREE_STREAMS = 2

/**
 * A batch of large files split into at most `lanes` lanes of about equal
 * bytes, pulled at once: the largest file goes first to the lane holding the
 * fewest bytes (the longest-processing-time rule), and each lane keeps the
 * listing's order. Returns the files' indices per lane; no lane is empty.
 */
export function splitLanes (bytes: readonly number[], lanes: number): number[][] {
  const n = Math.max(1, Math.min(Math.floor(lanes), bytes.length))
  const load = new Array<number>(n).fill(0)
  const of: number[][] = Array.from({ length: n }, () => [])
  const bySize = bytes.map((b, i) => i).sort((x, y) => bytes[y] - bytes[x] || x - y)
  for (const i of bySize) {
    let least = 0
    for (let k = 1; k < n; k++) if (load[k] < load[least]) least = k
    load[least] += bytes[i]
    of[least].push(i)
  }
  return of.filter(l => l.length > 0).map(l => l.sort((x, y) => x - y))
}
