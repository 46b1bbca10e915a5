/** One registry's settings from the agent's `registries` configuration, keyed by host[:port]. */
export interface RegistryConfig {
  username?: string
  password?: string
  /** A bearer token sent as it is (a registry's personal access token), instead of username and password. */
  token?: string
  /** Plain http instead of https: a registry on loopback in tests, or one behind a trusted network. */
  insecure?: boolean
}

export interface Challenge {
  scheme: 'basic' | 'bearer'
  params: Record<string, string>
}

/**
 * `WWW-Authenticate: Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull"`
 * (RFC 7235 auth-params; the Docker token flow puts realm, service and scope there).
 */
export function parseChallenge (header: string | undefined): Challenge | undefined {
  const m = /^\s*(basic|bearer)\b(.*)$/i.exec(header ?? '')
  if (m == null) return undefined
  const params: Record<string, string> = {}
  for (const p of m[2].matchAll(/([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]
  }
  return { scheme: m[1].toLowerCase() as Challenge['scheme'], params }
}

/** The token endpoint's URL for a Bearer challenge: realm plus service and scope. */
export function tokenUrl (challenge: Challenge, scope: string): URL {
  const url = new URL(challenge.params.realm)
  if (challenge.params.service !== undefined) url.searchParams.set('service', challenge.params.service)
  url.searchParams.set('scope', scope)
  return url
}

/** Seconds a token lives when the realm does not say: the Docker token spec's default. */
export const DEFAULT_TOKEN_SECONDS = 60

export function basicHeader (username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}
