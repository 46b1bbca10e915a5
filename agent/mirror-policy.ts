/**
 * The registry mirror's decisions, apart from its I/O: which request of the
 * registry API's read side a path is, which images may be mirrored, and
 * which bytes a Range header asks for.
 */

/** The repository name grammar of the distribution spec (path components of lower-case alphanumerics and separators). */
const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
const DIGEST = /^sha256:[a-f0-9]{64}$/

export type MirrorRequest =
  | { kind: 'base' }
  | { kind: 'manifest', name: string, reference: string }
  | { kind: 'blob', name: string, digest: string }

/** `/v2/`, `/v2/<name>/manifests/<tag or digest>`, `/v2/<name>/blobs/<digest>`; anything else is undefined. */
export function parseMirrorPath (pathname: string): MirrorRequest | undefined {
  if (pathname === '/v2/' || pathname === '/v2') return { kind: 'base' }
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(pathname)
  if (m === null || !NAME.test(m[1])) return undefined
  const [, name, what, ref] = m
  if (what === 'blobs') return DIGEST.test(ref) ? { kind: 'blob', name, digest: ref } : undefined
  return TAG.test(ref) || DIGEST.test(ref) ? { kind: 'manifest', name, reference: ref } : undefined
}

/**
 * Whether `registry/name` may be mirrored: a pattern is `registry/repository`
 * (exactly that one) or `registry/prefix/*` (every repository under it), or
 * `registry/*` (all of that registry).
 */
export function mirrorAllowed (patterns: readonly string[], registry: string, name: string): boolean {
  const image = `${registry}/${name}`
  return patterns.some(p => p.endsWith('/*') ? image.startsWith(p.slice(0, -1)) : image === p)
}

/** The registry a request is for: containerd names it in `?ns=`; without it, the registry of the first pattern. */
export function upstreamOf (patterns: readonly string[], ns: string | null): string | undefined {
  if (ns !== null && ns !== '') return ns
  const first = patterns[0]
  return first === undefined ? undefined : first.slice(0, first.indexOf('/'))
}

/**
 * The one byte range a `Range: bytes=…` header asks for within `size` bytes,
 * 'unsatisfiable' when it lies outside, undefined for the whole (no header,
 * or a form a registry need not honour, such as several ranges).
 */
export function parseRange (header: string | undefined, size: number): { start: number, end: number } | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return undefined
  let start: number
  let end: number
  if (m[1] === '') {
    // A suffix: the last n bytes.
    const n = Number(m[2])
    if (n === 0) return 'unsatisfiable'
    start = Math.max(0, size - n)
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  }
  if (start >= size || end < start) return 'unsatisfiable'
  return { start, end }
}
