import { PermissionDeniedError, UnsupportedError, parseLocation, pluginUrl } from '../mesh/index.ts'
import type { Location } from '../mesh/index.ts'
import type { ProtocolPlugin } from '../protocols/index.ts'

export interface PluginSet {
  /** The agent's own volumes, as a `file` plug-in. */
  volumes: ProtocolPlugin
  /** Plug-ins by URL scheme (random, null, http, third-party…). */
  byScheme: ReadonlyMap<string, ProtocolPlugin>
}

export interface Resolved {
  plugin: ProtocolPlugin
  url: URL
  location: Location
}

/**
 * Maps a location this agent runs locally to a plug-in and the URL that
 * plug-in understands. `agent://<self>/vol/path` is the volumes plug-in at
 * `file:///vol/path`; another agent's location is not local (the caller uses
 * the agent plug-in with a ticket for those).
 */
export function resolveLocal (text: string, self: string, plugins: PluginSet, field: string): Resolved {
  const location = parseLocation(text, field)
  if (location.kind === 'agent') {
    if (location.agent !== self) throw new PermissionDeniedError(`${field}: ${text} belongs to agent '${location.agent}', not to '${self}'`)
    // Keep the path exactly as sent (still percent-encoded) so the volumes plug-in checks it once.
    return { plugin: plugins.volumes, url: new URL(`file://${location.url.pathname}`), location }
  }
  const plugin = plugins.byScheme.get(location.scheme)
  if (plugin === undefined) {
    const have = ['agent', ...plugins.byScheme.keys()].join(', ')
    throw new UnsupportedError(`${field}: no plug-in for scheme '${location.scheme}' on agent '${self}' (it has: ${have})`)
  }
  return { plugin, url: pluginUrl(location), location }
}
