import { InvalidArgumentError } from './errors.ts'

/**
 * A location is a URL. `agent://store-1/images/a.qcow2` is file `a.qcow2` in
 * volume `images` of agent `store-1`; any other scheme belongs to a protocol
 * plug-in and is run by the agent named in `?via=` (or chosen by the coordinator).
 */
export type Location =
  | { kind: 'agent', url: URL, agent: string, volume: string, path: string }
  | { kind: 'plugin', url: URL, scheme: string, via?: string }

const AGENT_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/i

export function isValidAgentName (name: string): boolean {
  return AGENT_NAME.test(name)
}

// WHATWG URL parsing resolves `..` and `%2e%2e` before anyone sees the path,
// so `agent://a/vol/../../etc/passwd` would silently become volume `etc`.
// Refuse dot segments in the text itself, encoded or not.
const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|\?|#|$)/i

export function parseLocation (text: string, field = 'location'): Location {
  const path = text.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '')
  if (DOT_SEGMENT.test(path)) throw new InvalidArgumentError(`${field}: '${text}' contains a '.' or '..' path segment; paths must stay inside their volume`)
  if (/%00|\0/.test(text)) throw new InvalidArgumentError(`${field}: NUL bytes are not allowed in locations`)
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new InvalidArgumentError(`${field}: '${text}' is not a URL (expected e.g. agent://store-1/images/file.img)`)
  }
  const scheme = url.protocol.slice(0, -1)
  if (scheme === 'agent') {
    const agent = url.hostname
    if (!isValidAgentName(agent)) throw new InvalidArgumentError(`${field}: '${agent}' is not a valid agent name`)
    const segments = url.pathname.split('/').filter(s => s !== '')
    // `agent://a/vol/` is the volume's root directory; without the slash it would name no object.
    if (segments.length < 2 && !(segments.length === 1 && url.pathname.endsWith('/'))) {
      throw new InvalidArgumentError(`${field}: '${text}' must name a volume and a path: agent://${agent}/<volume>/<path>`)
    }
    const decoded = segments.map(s => decodeSegment(s, field, text))
    const [volume, ...rest] = decoded
    return { kind: 'agent', url, agent, volume, path: rest.join('/') }
  }
  const via = url.searchParams.get('via') ?? undefined
  if (via !== undefined && !isValidAgentName(via)) throw new InvalidArgumentError(`${field}: via '${via}' is not a valid agent name`)
  return { kind: 'plugin', url, scheme, via }
}

/** A volume path segment decodes to one name: never a separator, never a dot segment. */
function decodeSegment (raw: string, field: string, text: string): string {
  let segment: string
  try {
    segment = decodeURIComponent(raw)
  } catch {
    throw new InvalidArgumentError(`${field}: '${text}' has malformed percent-encoding`)
  }
  if (segment === '.' || segment === '..' || /[/\\]/.test(segment)) {
    throw new InvalidArgumentError(`${field}: '${text}' encodes a path separator or dot segment; paths must stay inside their volume`)
  }
  return segment
}

/**
 * A volume location that ends in `/` names a directory (`agent://a/vol/dataset/`):
 * a tree as a source, and as a destination the directory a file goes into
 * under its own name, as `cp` does. A plug-in's URL means what its protocol
 * says (`https://host/` is a resource, not a directory).
 */
export function namesDirectory (loc: Location): boolean {
  return loc.kind === 'agent' && loc.url.pathname.endsWith('/')
}

/** The last name of a location's path (a file's own name), decoded; '' for a directory location. */
export function baseName (loc: Location): string {
  if (loc.kind === 'agent') return loc.url.pathname.endsWith('/') ? '' : loc.path.split('/').pop() ?? ''
  const last = loc.url.pathname.split('/').pop() ?? ''
  try {
    return decodeURIComponent(last)
  } catch {
    return last
  }
}

/** The URL a plug-in sees: `via` is routing information for the coordinator, not part of the object's address. */
export function pluginUrl (loc: Location): URL {
  const url = new URL(loc.url.href)
  url.searchParams.delete('via')
  return url
}
