import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { dirname, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { Type } from 'typebox'
import type { TSchema } from 'typebox'
import Value from 'typebox/value'
import { StaccatoError } from '../mesh/index.ts'
import { parseSize } from '../protocols/index.ts'
import type { Volume } from '../protocols/index.ts'
import { parseVolume } from './options.ts'

/**
 * One layer for every option of `staccato coordinator` and `staccato agent`:
 * flags > environment (STACCATO_*) > config file (YAML) > defaults. Each
 * option is declared once (OptionSpec), which gives its flag, its help, its
 * environment variable, its file schema and its parser.
 */

export class ConfigError extends StaccatoError {
  constructor (message: string) { super('invalid_config', message, false) }
}

export type OptionKind = 'string' | 'path' | 'int' | 'port' | 'size' | 'rate' | 'list' | 'volumes' | 'level'

export interface OptionSpec {
  /** Key in the config file's section, e.g. `maxActive`. */
  key: string
  /** Commander flags, e.g. `--max-active <n>`; list kinds are repeatable. */
  flag: string
  env?: string
  kind: OptionKind
  /** As it would be written in the config file. */
  default?: string | number | string[]
  description: string
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const


export function flagName (spec: OptionSpec): string {
  return spec.flag.split(' ')[0]
}

export function attributeName (spec: OptionSpec): string {
  return flagName(spec).slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}

function collectFlag (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

/** Declares the options on a command without Commander defaults, so that an absent flag is told apart from a default. */
export function addConfigOptions (cmd: Command, specs: readonly OptionSpec[]): Command {
  cmd.option('--config <file>', 'read options from this YAML file (env STACCATO_CONFIG)')
  for (const spec of specs) {
    const notes = [
      spec.default !== undefined ? `default ${Array.isArray(spec.default) ? spec.default.join(',') || 'none' : spec.default}` : undefined,
      spec.env !== undefined ? `env ${spec.env}` : undefined
    ].filter(n => n !== undefined)
    const description = `${spec.description}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`
    if (spec.kind === 'list' || spec.kind === 'volumes') cmd.option(spec.flag, `${description}; repeatable`, collectFlag)
    else cmd.option(spec.flag, description)
  }
  return cmd
}

/** A volume as the agent's plug-in takes it: the config checks it once and hands it on unchanged. */
export type { Volume }

export interface Resolved {
  values: Record<string, unknown>
  /** Where each value came from, to name it in later checks: `--volume`, `STACCATO_VOLUMES`, `config: agent.volumes`, `default`. */
  origin: Record<string, string>
}


const VOLUME_NAME = '^[A-Za-z0-9._-]+$'

function fileSchema (kind: OptionKind): TSchema {
  switch (kind) {
    case 'string': case 'path': return Type.String({ minLength: 1 })
    case 'int': return Type.Integer({ minimum: 0 })
    case 'port': return Type.Integer({ minimum: 0, maximum: 65535 })
    case 'size': case 'rate': return Type.Union([Type.Integer({ minimum: 0 }), Type.String({ minLength: 1 })])
    case 'list': return Type.Array(Type.String({ minLength: 1 }))
    case 'level': return Type.Union(LOG_LEVELS.map(l => Type.Literal(l)))
    case 'volumes': return Type.Array(Type.Object({
      name: Type.String({ pattern: VOLUME_NAME }),
      root: Type.String({ minLength: 1 }),
      readOnly: Type.Optional(Type.Boolean())
    }, { additionalProperties: false }))
  }
}

/** The sections of a configuration file: one file may configure a coordinator and an agent. */
export const SECTIONS = ['coordinator', 'agent'] as const

/** The parsed YAML document, or an empty one when no file is named. */
export interface ConfigFile { path?: string, data: Record<string, unknown> }

export async function loadConfigFile (path: string | undefined, sections: readonly string[]): Promise<ConfigFile> {
  if (path === undefined || path === '') return { data: {} }
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
  }
  let data: unknown
  try {
    data = parseYaml(text)
  } catch (err) {
    throw new ConfigError(`config: ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`)
  }
  data ??= {}
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ConfigError(`config: ${path} must be a mapping with sections ${sections.join(', ')}`)
  for (const key of Object.keys(data)) {
    if (!sections.includes(key)) throw new ConfigError(`config: ${path}: unknown section '${key}' (expected ${sections.join(' or ')})`)
  }
  return { path: resolve(path), data: data as Record<string, unknown> }
}

/**
 * Merges flags, environment, the file's section and defaults, parsing each
 * value where it came from so that an error names that place. `fileSpecs`
 * are the options the file's section may hold, when a command reads only
 * some of them from a file written for another (`agent status` reads the
 * agent's file for its status port).
 */
export function resolveOptions (section: string, specs: readonly OptionSpec[], flags: Record<string, unknown>, env: NodeJS.ProcessEnv, file: ConfigFile, fileSpecs: readonly OptionSpec[] = specs): Resolved {
  const raw = file.data[section] ?? {}
  const schema = Type.Object(Object.fromEntries(fileSpecs.map(s => [s.key, Type.Optional(fileSchema(s.kind))])), { additionalProperties: false })
  const errors = Value.Errors(schema, raw)
  if (errors.length > 0) throw new ConfigError(`config: ${schemaMessage(section, errors)}`)
  const fromFile = raw as Record<string, unknown>
  const base = file.path !== undefined ? dirname(file.path) : process.cwd()

  const values: Record<string, unknown> = {}
  const origin: Record<string, string> = {}
  for (const spec of specs) {
    const flag = flags[attributeName(spec)]
    const envText = spec.env !== undefined ? env[spec.env] : undefined
    if (flag !== undefined) {
      origin[spec.key] = flagName(spec)
      values[spec.key] = fromText(spec, flagName(spec), flag as string | string[])
    } else if (envText !== undefined && envText !== '') {
      origin[spec.key] = spec.env as string
      values[spec.key] = fromText(spec, spec.env as string, spec.kind === 'list' || spec.kind === 'volumes' ? envText.split(',').map(s => s.trim()).filter(s => s !== '') : envText)
    } else if (fromFile[spec.key] !== undefined) {
      origin[spec.key] = `config: ${section}.${spec.key}`
      values[spec.key] = fromFileValue(spec, origin[spec.key], fromFile[spec.key], base)
    } else if (spec.default !== undefined) {
      origin[spec.key] = 'default'
      values[spec.key] = fromFileValue(spec, 'default', spec.default, process.cwd())
    }
  }
  return { values, origin }
}

function fromText (spec: OptionSpec, where: string, text: string | string[]): unknown {
  switch (spec.kind) {
    case 'string': case 'path': return text
    case 'int': case 'port': {
      const n = Number(text)
      if (text === '' || !Number.isSafeInteger(n) || n < 0) throw new ConfigError(`${where} '${String(text)}' must be a whole number`)
      if (spec.kind === 'port' && n > 65535) throw new ConfigError(`${where} '${String(text)}' must be a port number (0-65535)`)
      return n
    }
    case 'size': return size(where, text as string)
    case 'rate': return rate(where, text as string)
    case 'level': {
      if (!(LOG_LEVELS as readonly string[]).includes(text as string)) throw new ConfigError(`${where} '${String(text)}' must be one of ${LOG_LEVELS.join(', ')}`)
      return text
    }
    case 'list': return [text].flat()
    case 'volumes': return [text].flat().map(v => {
      try {
        return parseVolume(v)
      } catch {
        throw new ConfigError(`${where} '${v}' must look like name=/path or name=/path:ro`)
      }
    })
  }
}

function fromFileValue (spec: OptionSpec, where: string, value: unknown, base: string): unknown {
  switch (spec.kind) {
    case 'path': return resolve(base, value as string)
    case 'size': return typeof value === 'number' ? value : size(where, value as string)
    case 'rate': return typeof value === 'number' ? (value === 0 ? undefined : value) : rate(where, value as string)
    case 'volumes': return (value as Array<{ name: string, root: string, readOnly?: boolean }>)
      .map(v => ({ name: v.name, root: resolve(base, v.root), readOnly: v.readOnly ?? false }))
    default: return value
  }
}

function size (where: string, text: string): number {
  try {
    return parseSize(text)
  } catch {
    throw new ConfigError(`${where} '${text}' must be a byte count, e.g. 4096, 64KiB, 16MiB`)
  }
}

function rate (where: string, text: string): number | undefined {
  if (text === '0') return undefined
  try {
    return parseSize(text.replace(/\/s$/i, ''))
  } catch {
    throw new ConfigError(`${where} '${text}' must be bytes per second, e.g. 100MiB`)
  }
}

interface SchemaError { keyword: string, instancePath: string, params: Record<string, unknown>, message: string }

/** `agent.volumes[1].root: must be string`: the first real error, with its path written as in the file. */
function schemaMessage (section: string, errors: readonly SchemaError[]): string {
  const err = errors.find(e => e.keyword !== 'boolean' && e.keyword !== 'anyOf') ?? errors[0]
  const path = section + err.instancePath.split('/').filter(p => p !== '').map(p => /^\d+$/.test(p) ? `[${p}]` : `.${p}`).join('')
  if (err.keyword === 'additionalProperties') {
    const extra = [err.params.additionalProperties].flat().map(String)
    return `${path}.${extra[0]}: unknown option`
  }
  if (err.keyword === 'required') return `${path}.${[err.params.requiredProperties].flat().map(String)[0]}: is required`
  if (err.keyword === 'const') {
    const allowed = errors.filter(e => e.instancePath === err.instancePath && e.keyword === 'const').map(e => String(e.params.allowedValue))
    return `${path}: must be one of ${allowed.join(', ')}`
  }
  if (errors.some(e => e.instancePath === err.instancePath && e.keyword === 'anyOf')) return `${path}: must be a number or a string such as 16MiB`
  return `${path}: ${err.message}`
}
