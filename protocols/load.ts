import { createRequire } from 'node:module'
import { isAbsolute, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { InvalidArgumentError } from '../mesh/index.ts'
import type { ProtocolPlugin } from './contract.ts'

/** A third-party plug-in: a module specifier, and options for its factory. */
export interface PluginSpec {
  specifier: string
  options?: unknown
}

const SCHEME = /^[a-z][a-z0-9+.-]*$/
const FLAGS = ['read', 'write', 'resume', 'list', 'checksum'] as const

/** Checks that `value` has the shape of a ProtocolPlugin; `from` names it in the error. */
export function validatePlugin (value: unknown, from: string): ProtocolPlugin {
  if (typeof value !== 'object' || value === null) {
    throw new InvalidArgumentError(`plug-in '${from}': expected a ProtocolPlugin object, got ${value === null ? 'null' : typeof value}`)
  }
  const p = value as Record<string, unknown>
  const problems: string[] = []
  if (typeof p.scheme !== 'string' || !SCHEME.test(p.scheme)) problems.push(`scheme must be a lower-case URL scheme, got ${JSON.stringify(p.scheme)}`)
  const caps = p.capabilities as Record<string, unknown> | undefined
  if (typeof caps !== 'object' || caps === null) {
    problems.push('capabilities must be an object')
  } else {
    for (const flag of FLAGS) if (typeof caps[flag] !== 'boolean') problems.push(`capabilities.${flag} must be a boolean`)
    if (caps.writeResume !== undefined && typeof caps.writeResume !== 'boolean') problems.push('capabilities.writeResume must be a boolean when present')
  }
  for (const fn of ['stat', 'read', 'write']) if (typeof p[fn] !== 'function') problems.push(`${fn} must be a function`)
  if (caps?.list === true && typeof p.list !== 'function') problems.push('capabilities.list is true but list is not a function')
  if (caps?.writeAt !== undefined && typeof caps.writeAt !== 'boolean') problems.push('capabilities.writeAt must be a boolean when present')
  if (caps?.writeAt === true && typeof p.openWriterAt !== 'function') problems.push('capabilities.writeAt is true but openWriterAt is not a function')
  if (p.close !== undefined && typeof p.close !== 'function') problems.push('close must be a function when present')
  if (problems.length > 0) throw new InvalidArgumentError(`plug-in '${from}' is not a valid protocol plug-in: ${problems.join('; ')}`)
  return value as ProtocolPlugin
}

/**
 * Where to import a specifier from: paths are relative to baseDir (the
 * agent's configuration); package names resolve from baseDir's node_modules
 * first, then from Staccato's own.
 */
function moduleUrl (specifier: string, baseDir: string): string {
  if (specifier.startsWith('file:')) return specifier
  if (specifier.startsWith('.') || isAbsolute(specifier)) return pathToFileURL(resolve(baseDir, specifier)).href
  try {
    const found = createRequire(join(resolve(baseDir), 'noop.js')).resolve(specifier)
    // Built-in modules resolve to their own name, not to a path.
    return isAbsolute(found) ? pathToFileURL(found).href : found
  } catch {
    return specifier
  }
}

async function loadOne (spec: PluginSpec, baseDir: string): Promise<ProtocolPlugin> {
  const { specifier } = spec
  let mod: Record<string, unknown>
  try {
    mod = await import(moduleUrl(specifier, baseDir))
  } catch (err) {
    throw new InvalidArgumentError(`plug-in '${specifier}' could not be loaded: ${(err as Error).message}`, { cause: err })
  }
  const exported = mod.default ?? mod.plugin
  if (exported === undefined) {
    throw new InvalidArgumentError(`plug-in '${specifier}' exports neither a default export nor 'plugin' (a factory or a ProtocolPlugin)`)
  }
  let value: unknown = exported
  if (typeof exported === 'function') {
    try {
      value = await (exported as (options: unknown) => unknown)(spec.options ?? {})
    } catch (err) {
      throw new InvalidArgumentError(`plug-in '${specifier}': its factory failed: ${(err as Error).message}`, { cause: err })
    }
  }
  return validatePlugin(value, specifier)
}

/**
 * Imports third-party plug-ins (`--plugin ./my-plugin.ts`, `--plugin some-package`).
 * A module's default export, or its export named `plugin`, is a factory
 * `(options) => ProtocolPlugin` or a ProtocolPlugin.
 */
export async function loadPlugins (specifiers: ReadonlyArray<string | PluginSpec>, baseDir: string): Promise<ProtocolPlugin[]> {
  const plugins: ProtocolPlugin[] = []
  for (const s of specifiers) plugins.push(await loadOne(typeof s === 'string' ? { specifier: s } : s, baseDir))
  return plugins
}
