import { InvalidArgumentError, SourceChangedError } from '../mesh/index.ts'
import type { Capabilities, ObjectVersion } from './contract.ts'

/**
 * Validates a read's offset/length against the object size and returns how
 * many bytes to read. A length that runs past the end is clamped (as an HTTP
 * range is); an offset past the end is an error, an offset at the end reads nothing.
 */
export function checkRange (url: URL, size: number, opts: { offset: number, length?: number }): number {
  const { offset, length } = opts
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new InvalidArgumentError(`${url.href}: offset ${offset} is not a non-negative integer`)
  }
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new InvalidArgumentError(`${url.href}: length ${length} is not a non-negative integer`)
  }
  if (offset > size) throw new InvalidArgumentError(`${url.href}: offset ${offset} is past the end of the object (${size} bytes)`)
  return Math.min(size - offset, length ?? Infinity)
}

/**
 * What differs between the version a caller expects and the one found, or
 * undefined when they are the same. An etag is compared only when both sides
 * have one, and mtime only when both know it (non-zero).
 */
export function versionMismatch (expect: ObjectVersion, found: ObjectVersion): string | undefined {
  if (expect.size !== found.size) return `size ${expect.size} → ${found.size}`
  if (expect.etag != null && found.etag != null && expect.etag !== found.etag) return `etag ${expect.etag} → ${found.etag}`
  if (expect.mtime !== 0 && found.mtime !== 0 && expect.mtime !== found.mtime) return `mtime ${expect.mtime} → ${found.mtime}`
  return undefined
}

export function assertVersion (what: string, expect: ObjectVersion | undefined, found: ObjectVersion): void {
  if (expect == null) return
  const diff = versionMismatch(expect, found)
  if (diff !== undefined) throw new SourceChangedError(`${what} changed since it was first seen (${diff})`)
}

/** Write keys become part of file names, so they are held to a safe alphabet. */
export function checkWriteKey (key: string): void {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(key)) {
    throw new InvalidArgumentError(`write key '${key}' must be 1-128 characters of A-Z a-z 0-9 . _ - (not starting with '.')`)
  }
}

export function checkOffset (url: URL, offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new InvalidArgumentError(`${url.href}: offset ${offset} is not a non-negative integer`)
  }
}

/** An iterable that fails on first use, so that read() reports errors where its other failures surface. */
export function failingIterable (err: Error): AsyncIterable<never> {
  return {
    [Symbol.asyncIterator] () {
      return { next: async () => { throw err } }
    }
  }
}

/** Whether write() accepts an offset > 0 (see Capabilities.writeResume). */
export function canResumeWrites (caps: Capabilities): boolean {
  return caps.write && (caps.writeResume ?? caps.resume)
}
