import { ExistsError, InvalidArgumentError, IsADirectoryError, baseName, namesDirectory, parseLocation } from '../../mesh/index.ts'
import type { Overwrite } from '../../mesh/index.ts'
import type { ObjectVersion } from '../../protocols/index.ts'

/**
 * Where a file goes: a destination ending in `/` is a directory, and the file
 * lands in it under the source's own name, as `cp file dir/` does. A source
 * ending in `/` is a tree, which only a directory can receive.
 */
export function planDestination (source: string, destination: string): string {
  const src = parseLocation(source, 'source')
  const dst = parseLocation(destination, 'destination')
  if (namesDirectory(src)) {
    if (!namesDirectory(dst)) throw new InvalidArgumentError(`destination: ${destination} names a file, but the source ${source} is a directory: end the destination with / (${destination}/)`)
    return destination
  }
  if (!namesDirectory(dst)) return destination
  const name = baseName(src)
  if (name === '') throw new InvalidArgumentError(`destination: ${destination} is a directory, and the source ${source} has no file name to give the file in it: name the file`)
  const url = new URL(dst.url.href)
  url.pathname += encodeURIComponent(name)
  return url.href
}

/** How two versions are compared by size and mtime: within this window, mtimes agree (a file system keeps at least milliseconds). */
const MTIME_WINDOW_MS = 1

export function sameSizeAndMtime (a: ObjectVersion, b: ObjectVersion): boolean {
  return a.size === b.size && Math.abs(a.mtime - b.mtime) <= MTIME_WINDOW_MS
}

/** What is at the destination before a byte moves. */
export type Existing = { kind: 'none' } | { kind: 'file', version: ObjectVersion } | { kind: 'directory' }

/**
 * The decision before a copy: go on, leave the destination as it is (it
 * already holds this version), or fail now with a clear code, never after
 * the bytes moved.
 */
export function decideOverwrite (mode: Overwrite, source: ObjectVersion | undefined, existing: Existing, destination: string): 'copy' | 'unchanged' {
  if (existing.kind === 'directory') throw new IsADirectoryError(`destination: ${destination} is a directory: end it with / to put the file inside it (${destination}/)`)
  if (existing.kind === 'none' || mode === 'always') return 'copy'
  if (mode === 'never') throw new ExistsError(`destination: ${destination} exists, and overwrite is never`)
  // Without the source's version (not asked for) nothing can be shown unchanged: copy.
  return source !== undefined && sameSizeAndMtime(source, existing.version) ? 'unchanged' : 'copy'
}

/** A source that is a directory named without the trailing slash: say which form to use. */
export function sourceIsDirectory (source: string): InvalidArgumentError {
  return new InvalidArgumentError(`source: ${source} is a directory: add a trailing / to copy the tree (${source}/)`)
}
