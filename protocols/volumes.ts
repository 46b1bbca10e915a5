import { mkdir, realpath } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join, sep } from 'node:path'
import { InvalidArgumentError, NotFoundError, PermissionDeniedError } from '../mesh/index.ts'
import { fsError } from './fs-errors.ts'

/**
 * Volumes: named directories an agent exports. Every path that reaches the
 * file system goes through here, so that nothing outside a volume's root is
 * ever read or written: dangerous segments are refused before any system
 * call, and what the kernel resolves (symlinks) is checked against the
 * root's real path afterwards.
 */

export interface Volume {
  name: string
  root: string
  readOnly: boolean
}

export interface ResolveOptions {
  /** The path will be written: refused on read-only volumes; the file itself need not exist. */
  forWrite?: boolean
  /** With forWrite: create missing parent directories (inside the volume). Default true. */
  createParents?: boolean
}

export interface Resolved {
  /** Real absolute path: the file for reads; the real parent joined with the base name for writes. */
  path: string
  /** Real path of the volume root. */
  root: string
  /** `volume/rel/path`, for messages: operators see volume paths, never the host's layout. */
  what: string
}

/** Checks one decoded path segment; throws PermissionDeniedError for anything that could step outside. */
export function checkSegment (segment: string, what: string): void {
  if (segment === '.' || segment === '..') throw new PermissionDeniedError(`${what}: '${segment}' segments are not allowed`)
  if (segment.includes('\0')) throw new PermissionDeniedError(`${what}: NUL bytes are not allowed in paths`)
  if (segment.includes('/')) throw new PermissionDeniedError(`${what}: an encoded '/' inside a path segment is not allowed`)
  if (segment.includes('\\')) throw new PermissionDeniedError(`${what}: backslashes are not allowed in paths`)
}

/** Splits a volume-relative path ('dir/file.img') into checked segments. */
export function splitRelPath (relPath: string, what: string): string[] {
  if (relPath.startsWith('/')) throw new PermissionDeniedError(`${what}: path must be relative to the volume`)
  const segments = relPath.split('/').filter(s => s !== '')
  for (const s of segments) checkSegment(s, what)
  return segments
}

/**
 * Decodes a URL path segment exactly once. The WHATWG URL parser has already
 * removed literal and `%2e%2e` dot segments; what it leaves encoded
 * (`%2e%2e%2f`, `%2f`, `%5c`, `%00`) is caught by checkSegment after decoding.
 */
export function decodeSegment (raw: string, what: string): string {
  let s: string
  try {
    s = decodeURIComponent(raw)
  } catch {
    throw new InvalidArgumentError(`${what}: malformed percent-encoding in '${raw}'`)
  }
  checkSegment(s, what)
  return s
}

/** `file:///<volume>/<path…>` → volume name and volume-relative path. */
export function parseFileUrl (url: URL): { volume: string, relPath: string } {
  if (url.protocol !== 'file:') throw new InvalidArgumentError(`${url.href} is not a file:// URL`)
  if (url.host !== '' && url.host !== 'localhost') {
    throw new InvalidArgumentError(`${url.href}: file URLs name a local volume (file:///<volume>/<path>), not host '${url.host}'`)
  }
  const raw = url.pathname.split('/').filter(s => s !== '')
  if (raw.length === 0) throw new InvalidArgumentError(`${url.href}: no volume named (file:///<volume>/<path>)`)
  const segments = raw.map(r => decodeSegment(r, url.href))
  return { volume: segments[0], relPath: segments.slice(1).join('/') }
}

export function isInside (root: string, real: string): boolean {
  return real === root || real.startsWith(root.endsWith(sep) ? root : root + sep)
}

function confine (root: string, real: string, what: string): void {
  if (!isInside(root, real)) throw new PermissionDeniedError(`${what}: resolves outside its volume (a symbolic link leaves it)`)
}

async function realRoot (volume: Volume): Promise<string> {
  try {
    return await realpath(volume.root)
  } catch (err) {
    throw fsError(err, `volume '${volume.name}' (its root directory)`)
  }
}

async function enterDir (root: string, dir: string, segment: string, what: string, create: boolean): Promise<string> {
  const candidate = join(dir, segment)
  let real: string
  try {
    real = await realpath(candidate)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !create) throw fsError(err, what)
    try {
      await mkdir(candidate)
    } catch (err) {
      // A dangling symlink also gives EEXIST: realpath below then fails with not found.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(err, what)
    }
    real = await realpath(candidate).catch(err => { throw fsError(err, what) })
  }
  confine(root, real, what)
  return real
}

export async function resolveIn (volumes: readonly Volume[], volumeName: string, relPath: string, opts: ResolveOptions = {}): Promise<Resolved> {
  const volume = volumes.find(v => v.name === volumeName)
  if (volume == null) {
    const known = volumes.map(v => v.name).join(', ')
    throw new NotFoundError(`no volume '${volumeName}' on this agent (volumes: ${known === '' ? 'none' : known})`)
  }
  const what = `${volumeName}/${relPath}`
  const segments = splitRelPath(relPath, what)
  if (opts.forWrite === true && volume.readOnly) throw new PermissionDeniedError(`${what}: volume '${volumeName}' is read-only`)
  const root = await realRoot(volume)
  if (opts.forWrite !== true) {
    const real = await realpath(join(root, ...segments)).catch(err => { throw fsError(err, what) })
    confine(root, real, what)
    return { path: real, root, what }
  }
  if (segments.length === 0) throw new InvalidArgumentError(`${what}: a write needs a file name inside the volume`)
  let dir = root
  for (const segment of segments.slice(0, -1)) dir = await enterDir(root, dir, segment, what, opts.createParents ?? true)
  return { path: join(dir, segments[segments.length - 1]), root, what }
}

/**
 * The real absolute path of `relPath` inside volume `volumeName`, or one of
 * NotFoundError (unknown volume, missing file), PermissionDeniedError
 * (traversal, symlink escape, read-only volume on write), InvalidArgumentError.
 * For the agent's data server to check a ticket's path the way the file plug-in does.
 */
export async function resolveVolumePath (volumes: readonly Volume[], volumeName: string, relPath: string, opts: ResolveOptions = {}): Promise<string> {
  return (await resolveIn(volumes, volumeName, relPath, opts)).path
}

/**
 * Checks, after open(), that the descriptor really is inside the volume: a
 * directory swapped for a symlink between realpath() and open() is caught
 * here. Linux only (/proc); elsewhere the realpath() check stands alone.
 */
export async function assertHandleInside (fh: FileHandle, root: string, what: string): Promise<void> {
  let real: string
  try {
    real = await realpath(`/proc/self/fd/${fh.fd}`)
  } catch {
    return
  }
  confine(root, real, what)
}
