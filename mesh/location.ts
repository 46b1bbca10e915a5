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

export function parseLocation (text: string, field = 'location'): Location {
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
    if (segments.length < 2) {
      throw new InvalidArgumentError(`${field}: '${text}' must name a volume and a path: agent://${agent}/<volume>/<path>`)
    }
    const [volume, ...rest] = segments
    return { kind: 'agent', url, agent, volume: decodeURIComponent(volume), path: rest.map(decodeURIComponent).join('/') }
  }
  const via = url.searchParams.get('via') ?? undefined
  if (via !== undefined && !isValidAgentName(via)) throw new InvalidArgumentError(`${field}: via '${via}' is not a valid agent name`)
  return { kind: 'plugin', url, scheme, via }
}

/** The URL a plug-in sees: `via` is routing information for the coordinator, not part of the object's address. */
export function pluginUrl (loc: Location): URL {
  const url = new URL(loc.url.href)
  url.searchParams.delete('via')
  return url
}
