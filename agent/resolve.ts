import { InvalidArgumentError, PermissionDeniedError, UnsupportedError, parseLocation, pluginUrl } from '../mesh/index.ts'
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
 * The built-in plug-ins and the operator's (`--plugin`), by scheme. A
 * plug-in may not take a scheme already served: a typo in a plug-in would
 * otherwise replace `https` for every transfer without a word, and one for
 * `agent` would never be reached (the volumes serve that scheme).
 */
export function pluginsByScheme (builtIn: ProtocolPlugin[], extra: ProtocolPlugin[], specifiers: string[]): Map<string, ProtocolPlugin> {
  const byScheme = new Map<string, ProtocolPlugin>()
  const from = new Map<string, string>()
  for (const p of builtIn) {
    byScheme.set(p.scheme, p)
    from.set(p.scheme, 'the built-in plug-in')
  }
  from.set('agent', "the agent's volume plug-in")
  extra.forEach((p, i) => {
    const specifier = specifiers[i] ?? p.scheme
    const taken = from.get(p.scheme)
    if (taken !== undefined) throw new InvalidArgumentError(`plug-in '${specifier}' serves scheme '${p.scheme}', which ${taken} already serves: give it another scheme, or load only one of the two`)
    byScheme.set(p.scheme, p)
    from.set(p.scheme, `plug-in '${specifier}'`)
  })
  return byScheme
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
