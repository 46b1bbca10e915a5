import { InvalidArgumentError, PermissionDeniedError } from '../../mesh/index.ts'
import type { Location } from '../../mesh/index.ts'
import type { TransferStore } from '../store.ts'
import { ForbiddenError } from './auth.ts'

/**
 * What one tenant may use. Each list is an allow-list of names or globs
 * (`compute-*`); an absent list allows everything of its kind.
 */
export interface TenantRule {
  agents?: string[]
  volumes?: string[]
  /** Plug-in URL schemes (`https`, `random` …): an agent fetching `http://` for a tenant is a request into the agent's network. */
  schemes?: string[]
}

/** Rules by tenant; the rule `*` applies to tenants that have none of their own. A tenant with no rule at all is unrestricted. */
export type TenantPolicy = Record<string, TenantRule>

const RULE_KEYS = ['agents', 'volumes', 'schemes'] as const

/** Checks a tenant policy read from a file: `{ "tenants": { "team-a": { "agents": ["store-1", "compute-*"] } } }` or the inner object. */
export function parseTenantPolicy (raw: unknown, what = 'tenant policy'): TenantPolicy {
  const outer = raw as { tenants?: unknown } | null
  const tenants = outer !== null && typeof outer === 'object' && 'tenants' in outer ? outer.tenants : raw
  if (tenants === null || typeof tenants !== 'object' || Array.isArray(tenants)) throw new InvalidArgumentError(`${what}: must be an object of tenants`)
  // No prototype: a tenant named `__proto__` or `constructor` is a key like any other.
  const policy: TenantPolicy = Object.create(null) as TenantPolicy
  for (const [tenant, rule] of Object.entries(tenants)) {
    if (rule === null || typeof rule !== 'object' || Array.isArray(rule)) throw new InvalidArgumentError(`${what}: tenants.${tenant} must be an object`)
    const out: TenantRule = {}
    for (const [key, list] of Object.entries(rule)) {
      if (!(RULE_KEYS as readonly string[]).includes(key)) throw new InvalidArgumentError(`${what}: tenants.${tenant}: unknown field '${key}' (known: ${RULE_KEYS.join(', ')})`)
      if (!Array.isArray(list) || !list.every(v => typeof v === 'string' && v !== '')) {
        throw new InvalidArgumentError(`${what}: tenants.${tenant}.${key} must be a list of names`)
      }
      out[key as typeof RULE_KEYS[number]] = list
    }
    policy[tenant] = out
  }
  return policy
}

function matches (patterns: string[] | undefined, name: string): boolean {
  if (patterns === undefined) return true
  return patterns.some(p => p === name || (p.includes('*') && glob(p).test(name)))
}

function glob (pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map(s => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)
}

/**
 * Refuses anything in a location's path that could leave a volume, looking at
 * the text as sent: the URL parser quietly resolves `..`, so
 * `agent://a/vol/../../etc/passwd` would otherwise become volume `etc` and hide
 * what was asked. The agent checks again against real paths; this gives the
 * client a clear 400 instead of a transfer that fails later.
 */
export function checkLocationText (text: string, field: string): void {
  // Tabs and newlines are dropped by the URL parser, which would turn `.\n.` into `..`.
  if (hasControlCharacter(text)) throw new InvalidArgumentError(`${field}: control characters (including NUL) are not allowed in locations`)
  const m = /^agent:\/\/[^/?#]*([^?#]*)/i.exec(text)
  if (m === null) return
  for (const raw of m[1].split('/')) {
    if (raw === '') continue
    let segment: string
    try {
      segment = decodeURIComponent(raw)
    } catch {
      throw new InvalidArgumentError(`${field}: malformed percent-encoding in '${raw}'`)
    }
    if (segment === '.' || segment === '..') throw new InvalidArgumentError(`${field}: '${segment}' path segments are not allowed (${raw})`)
    if (segment.includes('\0')) throw new InvalidArgumentError(`${field}: NUL bytes are not allowed in paths`)
    if (segment.includes('/') || segment.includes('\\')) throw new InvalidArgumentError(`${field}: an encoded '/' or a backslash inside a path segment is not allowed (${raw})`)
  }
}

function hasControlCharacter (text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}

/**
 * The tenant's own rule, else the `*` rule. Own keys only: `policy[tenant]`
 * would find `constructor` or `toString` on Object.prototype, and a tenant
 * named so would escape the `*` rule.
 */
function ruleFor (policy: TenantPolicy, tenant: string): TenantRule | undefined {
  if (Object.hasOwn(policy, tenant)) return policy[tenant]
  return Object.hasOwn(policy, '*') ? policy['*'] : undefined
}

/**
 * Whether the tenant could name this agent in a location itself: what the
 * coordinator chooses on its behalf (an image distribution's seed) must pass
 * the same allow-list, or a choice made for one tenant reaches another's agent.
 */
export function mayUseAgent (policy: TenantPolicy, tenant: string, agent: string): boolean {
  return matches(ruleFor(policy, tenant)?.agents, agent)
}

/** The tenant's allow-list for one location; 403 forbidden names what it may not use. */
export function checkTenantLocation (policy: TenantPolicy, tenant: string, loc: Location, agents: string[]): void {
  const rule = ruleFor(policy, tenant)
  if (rule === undefined) return
  for (const agent of agents) {
    if (!mayUseAgent(policy, tenant, agent)) throw new ForbiddenError(`tenant ${tenant} may not use agent ${agent}`)
  }
  if (loc.kind === 'agent') {
    if (!matches(rule.volumes, loc.volume)) throw new ForbiddenError(`tenant ${tenant} may not use volume ${loc.volume} (on agent ${loc.agent})`)
  } else if (!matches(rule.schemes, loc.scheme)) {
    throw new ForbiddenError(`tenant ${tenant} may not use ${loc.scheme}:// locations`)
  }
}

/** A destination in a volume its agent exports read-only can never succeed. */
export function checkWritable (store: TransferStore, loc: Location): void {
  if (loc.kind !== 'agent') return
  const volume = store.getAgent(loc.agent)?.volumes.find(v => v.name === loc.volume)
  if (volume?.readOnly === true) throw new PermissionDeniedError(`destination: volume ${loc.volume} of agent ${loc.agent} is read-only`)
}
