import { InvalidArgumentError } from '../../mesh/index.ts'
import { pieceCount, pieceRange } from './manifest.ts'

/**
 * A tree distribution's file table: the files laid end to end, each at its
 * offset in the concatenation the pieces cut (a multi-file torrent's
 * layout). Pure arithmetic over the table, apart from any I/O: which files
 * a byte range covers, which pieces a file needs, and when a file's last
 * piece has arrived.
 */
export interface TableFile { path: string, offset: number, size: number }

export interface FileSegment {
  /** The file's index in the table. */
  file: number
  /** Offset inside the file. */
  at: number
  length: number
}

/** The parts of files that `[offset, offset + length)` of the concatenation covers; empty files cover nothing. */
export function fileSegments (files: readonly TableFile[], offset: number, length: number): FileSegment[] {
  const out: FileSegment[] = []
  // The last file that starts at or before `offset` (binary search: a table holds thousands of files).
  let lo = 0
  let hi = files.length - 1
  let first = files.length
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (files[mid].offset <= offset) { first = mid; lo = mid + 1 } else hi = mid - 1
  }
  // Empty files share their offset with the next one: step back over them to the first of that offset.
  while (first > 0 && first < files.length && files[first - 1].offset === files[first].offset) first--
  for (let i = first; i < files.length && length > 0; i++) {
    const f = files[i]
    const end = f.offset + f.size
    if (f.size === 0 || offset >= end) continue
    const at = offset - f.offset
    const take = Math.min(length, f.size - at)
    out.push({ file: i, at, length: take })
    offset += take
    length -= take
  }
  return out
}

/** A file of the tree in the directory `dir` (a URL ending in /), each segment of its path encoded. */
export function fileUrl (dir: URL, path: string): URL {
  return new URL(dir.href + path.split('/').map(encodeURIComponent).join('/'))
}

/** The pieces that hold a file's bytes, first to last; undefined for an empty file (no piece holds it). */
export function piecesOfFile (f: TableFile, pieceSize: number): { first: number, last: number } | undefined {
  if (f.size === 0) return undefined
  return { first: Math.floor(f.offset / pieceSize), last: Math.floor((f.offset + f.size - 1) / pieceSize) }
}

/**
 * Checks a table against the manifest it came in: contiguous offsets from 0
 * that add up to the object's size, and paths that stay inside the tree
 * (relative, no '.' or '..' segment, no empty one). A destination writes
 * where the table says, so it checks the table before it writes anything.
 */
export function checkTable (files: readonly TableFile[], size: number): void {
  let at = 0
  for (const f of files) {
    checkTreePath(f.path)
    if (f.offset !== at) throw new InvalidArgumentError(`tree manifest: ${f.path} starts at ${f.offset}, not ${at}`)
    at += f.size
  }
  if (at !== size) throw new InvalidArgumentError(`tree manifest: its files add up to ${at} bytes, not ${size}`)
}

export function checkTreePath (path: string): void {
  if (path.startsWith('/') || path.split('/').some(s => s === '' || s === '.' || s === '..')) {
    throw new InvalidArgumentError(`tree manifest: '${path}' is not a path inside the tree`)
  }
}

/** The pieces every byte of which lies in files already whole at the destination: they need not be fetched. */
export function piecesWithin (files: readonly TableFile[], held: ReadonlySet<number>, m: { size: number, pieceSize: number }): number[] {
  const out: number[] = []
  for (let piece = 0; piece < pieceCount(m); piece++) {
    const { offset, length } = pieceRange(m, piece)
    if (length > 0 && fileSegments(files, offset, length).every(s => held.has(s.file))) out.push(piece)
  }
  return out
}

/**
 * Which files are complete as pieces arrive: each file waits for the pieces
 * that hold its bytes, and is handed out once, when the last of them came.
 */
export class FileCompletion {
  private readonly files: readonly TableFile[]
  private readonly m: { size: number, pieceSize: number }
  private readonly missing: number[]
  private readonly seen = new Set<number>()

  constructor (files: readonly TableFile[], m: { size: number, pieceSize: number }) {
    this.files = files
    this.m = m
    this.missing = files.map(f => {
      const range = piecesOfFile(f, m.pieceSize)
      return range === undefined ? 0 : range.last - range.first + 1
    })
  }

  /** A piece is written: the files it completed (each once; a piece written twice counts once). */
  written (piece: number): number[] {
    if (this.seen.has(piece)) return []
    this.seen.add(piece)
    const { offset, length } = pieceRange(this.m, piece)
    const done: number[] = []
    for (const s of fileSegments(this.files, offset, length)) {
      this.missing[s.file]--
      if (this.missing[s.file] === 0) done.push(s.file)
    }
    return done
  }
}
