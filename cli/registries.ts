import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import type { RegistryConfig } from '../protocols/index.ts'
import { ConfigError } from './config.ts'

const KEYS = new Set(['username', 'password', 'passwordFile', 'token', 'tokenFile', 'insecure'])
// host, IPv4 or [IPv6], then an optional port: how an oci:// URL names its registry.
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/

/**
 * The agent's registries file (`--registries-file`): settings and
 * credentials per registry host, kept out of the main configuration so that
 * the secrets can live in a file only the agent reads:
 *
 *   registries:
 *     registry.example:5000: { username: alice, passwordFile: ./alice.pw }
 *     127.0.0.1:5000: { insecure: true }
 *
 * Files named by passwordFile and tokenFile are relative to this file; a
 * trailing newline in them is dropped.
 */
export async function loadRegistries (path: string): Promise<Record<string, RegistryConfig>> {
  let data: unknown
  try {
    data = parseYaml(await readFile(path, 'utf8'))
  } catch (err) {
    throw new ConfigError(`registries file ${path}: ${(err as Error).message}`)
  }
  const section = (data as { registries?: unknown } | null)?.registries
  if (typeof section !== 'object' || section === null || Array.isArray(section)) throw new ConfigError(`registries file ${path}: expected a 'registries:' map of host → settings`)
  const out: Record<string, RegistryConfig> = {}
  for (const [host, raw] of Object.entries(section as Record<string, unknown>)) {
    const where = `registries file ${path}: registries.${host}`
    if (!HOST.test(host)) throw new ConfigError(`${where}: not a host[:port]`)
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${where}: expected a map of settings`)
    const v = raw as Record<string, unknown>
    for (const key of Object.keys(v)) if (!KEYS.has(key)) throw new ConfigError(`${where}.${key}: unknown setting (known: ${[...KEYS].join(', ')})`)
    for (const key of ['username', 'password', 'passwordFile', 'token', 'tokenFile']) {
      if (v[key] !== undefined && (typeof v[key] !== 'string' || v[key] === '')) throw new ConfigError(`${where}.${key}: must be a non-empty string`)
    }
    if (v.insecure !== undefined && typeof v.insecure !== 'boolean') throw new ConfigError(`${where}.insecure: must be true or false`)
    const secret = async (key: 'password' | 'token'): Promise<string | undefined> => {
      const file = v[`${key}File`] as string | undefined
      if (v[key] !== undefined && file !== undefined) throw new ConfigError(`${where}: give ${key} or ${key}File, not both`)
      if (file === undefined) return v[key] as string | undefined
      const text = await readFile(resolve(dirname(path), file), 'utf8').catch(err => { throw new ConfigError(`${where}.${key}File: ${(err as Error).message}`) })
      return text.replace(/\r?\n$/, '')
    }
    const conf: RegistryConfig = { insecure: v.insecure as boolean | undefined, username: v.username as string | undefined, password: await secret('password'), token: await secret('token') }
    if ((conf.username === undefined) !== (conf.password === undefined)) throw new ConfigError(`${where}: username and password go together`)
    if (conf.token !== undefined && conf.username !== undefined) throw new ConfigError(`${where}: give a token or a username and password, not both`)
    out[host] = Object.fromEntries(Object.entries(conf).filter(([, x]) => x !== undefined)) as RegistryConfig
  }
  return out
}
