import { hash } from 'node:crypto'
import { constants, closeSync, fstatSync, openSync, readSync, readlinkSync, realpathSync } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { createRequire } from 'node:module'
import { sep } from 'node:path'
import type { Blake3Hasher } from '@napi-rs/blake-hash'
import type { IoError } from './group-io.ts'

/**
 * The system calls of a pack of small files read whole (readFiles, for a
 * tree's holder), with nothing but plain data in and out: they run in a
 * read thread (group-thread.ts), beside the event loop, or inline where no
 * thread can be started. Each async call of the holder's old path cost
 * ~20-25 µs of its main thread (profiled: lstat, open, read, readlink per
 * file); here each is a synchronous call of a few µs on the other core. The
 * defences of the reader (file-group.ts readWhole, file.ts read): O_NOFOLLOW,
 * a name that is a link followed whole and confined, the descriptor inside
 * the volume, a regular file, the version expected, unchanged while read.
 * Nothing of mesh/ is imported (as group-io.ts): the thread starts in a few ms.
 */

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = constants

export type Algorithm = 'sha256' | 'blake3'

/** One file to read whole: `path` is in `root` (the volume's real root), its parent already resolved and confined by the caller. */
export interface ReadJob { path: string, root: string, what: string, expect?: { size: number, mtime: number, etag?: string } }

/** Why a file was not read: a system call's error, a refusal, or a named case the caller maps to its error class. */
export type ReadError = IoError | { changed: string } | { directory: string } | { notFile: string }

/** A file read: its bytes are `size` bytes at `offset` of the pack's one buffer. */
export type ReadOut = { offset: number, size: number, mtime: number, etag: string, real: string, digest?: string } | { error: ReadError }

class Refused extends Error {
  readonly error: ReadError
  constructor (error: ReadError) {
    super('refused')
    this.error = error
  }
}

/** A file's version as every reader of this plug-in states it: file-group.ts's stat and the read thread's checks compare these etags. */
export function versionOf (st: BigIntStats): { size: number, mtime: number, etag: string } {
  return { size: Number(st.size), mtime: Number(st.mtimeNs / 1_000_000n), etag: `${st.ino.toString(16)}-${st.size.toString(16)}-${st.mtimeNs.toString(16)}` }
}

/** As util.ts versionMismatch (not imported: it brings mesh/ with it). */
function mismatch (expect: { size: number, mtime: number, etag?: string }, found: { size: number, mtime: number, etag: string }): string | undefined {
  if (expect.size !== found.size) return `size ${expect.size} → ${found.size}`
  if (expect.etag != null && expect.etag !== found.etag) return `etag ${expect.etag} → ${found.etag}`
  if (expect.mtime !== 0 && found.mtime !== 0 && expect.mtime !== found.mtime) return `mtime ${expect.mtime} → ${found.mtime}`
  return undefined
}

function confine (root: string, real: string, what: string): void {
  if (real !== root && !real.startsWith(root.endsWith(sep) ? root : root + sep)) throw new Refused({ denied: `${what}: resolves outside its volume (a symbolic link leaves it)` })
}

function readError (err: unknown): ReadError {
  if (err instanceof Refused) return err.error
  const e = err as NodeJS.ErrnoException
  return { errno: { code: e.code, syscall: e.syscall, message: String(e.message) } }
}

type Blake3 = typeof Blake3Hasher
let blake3: Blake3 | undefined

/** The native blake3 binding loaded on its first use: ~30 ms of a thread's start otherwise, measured with --cpu-prof (a write thread never hashes). */
function blake3Hasher (): Blake3 {
  blake3 ??= (createRequire(import.meta.url)('@napi-rs/blake-hash') as { Blake3Hasher: Blake3 }).Blake3Hasher
  return blake3
}

export function digestOf (algorithm: Algorithm, data: Uint8Array): string {
  if (algorithm === 'blake3') return new (blake3Hasher())().update(Buffer.from(data.buffer, data.byteOffset, data.byteLength)).digest('hex')
  return hash('sha256', data, 'hex')
}

interface Opened { fd: number, real: string, version: { size: number, mtime: number, etag: string } }

/**
 * Each file opened and checked, then all read into one buffer of their
 * sizes (its own ArrayBuffer, so it moves to the caller's thread without a
 * copy), each checked again after its read and hashed with `algorithm`.
 * Memory: the pack's bytes, which the caller bounds (64 files of ≤ 256 KiB).
 */
export function readPack (jobs: ReadJob[], algorithm?: Algorithm): { bytes: Uint8Array, out: ReadOut[] } {
  const opened: Array<Opened | { error: ReadError }> = jobs.map(j => {
    let fd: number | undefined
    try {
      // O_NONBLOCK: a FIFO swapped in must not hang the open (no effect on regular files).
      const flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK
      try {
        fd = openSync(j.path, flags)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOOP') throw err
        // The name itself is a link: followed whole, and confined, as read() does.
        const target = realpathSync.native(j.path)
        confine(j.root, target, j.what)
        fd = openSync(target, flags)
      }
      let real = j.path
      try { real = readlinkSync(`/proc/self/fd/${fd}`) } catch { /* no /proc (not Linux): the path checks stand alone */ }
      confine(j.root, real, j.what)
      const st = fstatSync(fd, { bigint: true })
      if (st.isDirectory()) throw new Refused({ directory: `${j.what}: is a directory` })
      if (!st.isFile()) throw new Refused({ notFile: `${j.what}: not a regular file` })
      const version = versionOf(st)
      const diff = j.expect === undefined ? undefined : mismatch(j.expect, version)
      if (diff !== undefined) throw new Refused({ changed: `${j.what} changed since it was first seen (${diff})` })
      return { fd, real, version }
    } catch (err) {
      if (fd !== undefined) closeSync(fd)
      return { error: readError(err) }
    }
  })
  let total = 0
  for (const o of opened) if (!('error' in o)) total += o.version.size
  // Not from the shared pool: its ArrayBuffer is this pack's alone, to transfer.
  const bytes = Buffer.allocUnsafeSlow(total)
  let at = 0
  const out = opened.map((o, i): ReadOut => {
    if ('error' in o) return o
    const { fd, real, version } = o
    try {
      let n = 0
      while (n < version.size) {
        const got = readSync(fd, bytes, at + n, version.size - n, n)
        if (got === 0) throw new Refused({ changed: `${jobs[i].what}: shrank while being read` })
        n += got
      }
      // Bytes read across a rewrite could be a splice of two versions: refuse them.
      const diff = mismatch(version, versionOf(fstatSync(fd, { bigint: true })))
      if (diff !== undefined) throw new Refused({ changed: `${jobs[i].what} (while being read) changed since it was first seen (${diff})` })
      const offset = at
      at += version.size
      return { offset, ...version, real, ...(algorithm === undefined ? {} : { digest: digestOf(algorithm, bytes.subarray(offset, at)) }) }
    } catch (err) {
      return { error: readError(err) }
    } finally {
      closeSync(fd)
    }
  })
  return { bytes: bytes.subarray(0, at), out }
}
