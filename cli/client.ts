import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import type { Command } from 'commander'

/**
 * An error a client command reports in one line; `exitCode` 2 means the
 * command line was wrong, 1 that the operation failed. It is not a
 * StaccatoError on purpose: importing mesh/ loads libp2p, about a second of
 * start-up that a client command never needs.
 */
export class CliError extends Error {
  readonly code: string
  readonly exitCode: number
  readonly status?: number
  /** The API's answer, for errors that carry more than code and message (410 cursor_expired has `oldest`). */
  readonly body?: Record<string, unknown>
  constructor (code: string, message: string, exitCode: number, status?: number, body?: Record<string, unknown>) {
    super(message)
    this.name = 'CliError'
    this.code = code
    this.exitCode = exitCode
    this.status = status
    this.body = body
  }
}

function configError (message: string): CliError {
  return new CliError('invalid_config', message, 2)
}

export const DEFAULT_URL = 'http://127.0.0.1:7700'
/** A request that is not a long poll gets this long for an answer. */
const REQUEST_TIMEOUT_MS = 30_000

export interface ClientSettings {
  url: string
  token?: string
}

export interface ClientFlags { url?: string, token?: string, config?: string }

const CLIENT_KEYS = ['url', 'token']

export function defaultClientConfigPath (env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(homedir(), '.config')
  return join(base, 'staccato', 'client.json')
}

/** The API address and token: flags, then STACCATO_URL/STACCATO_TOKEN, then the client config file. */
export async function clientSettings (flags: ClientFlags, env: NodeJS.ProcessEnv = process.env): Promise<ClientSettings> {
  const explicit = flags.config !== undefined
  const path = flags.config ?? defaultClientConfigPath(env)
  let file: { url?: string, token?: string } = {}
  let text: string | undefined
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (explicit || (err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw configError(`config: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
    }
  }
  if (text !== undefined) {
    let data: unknown
    try {
      data = JSON.parse(text)
    } catch (err) {
      throw configError(`config: ${path} is not valid JSON: ${(err as Error).message}`)
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw configError(`config: ${path} must be a JSON object with url and token`)
    for (const [key, value] of Object.entries(data)) {
      if (!CLIENT_KEYS.includes(key)) throw configError(`config: ${path}: unknown option '${key}' (expected ${CLIENT_KEYS.join(', ')})`)
      if (typeof value !== 'string' || value === '') throw configError(`config: ${path}: ${key} must be a non-empty string`)
    }
    file = data as typeof file
  }
  const url = nonEmpty(flags.url) ?? nonEmpty(env.STACCATO_URL) ?? file.url ?? DEFAULT_URL
  const origin = nonEmpty(flags.url) !== undefined ? '--url' : nonEmpty(env.STACCATO_URL) !== undefined ? 'STACCATO_URL' : file.url !== undefined ? `${path}: url` : 'the default URL'
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw configError(`${origin} '${url}' is not a URL, e.g. http://127.0.0.1:7700`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw configError(`${origin} '${url}' must be an http:// or https:// URL`)
  return { url: url.replace(/\/+$/, ''), token: nonEmpty(flags.token) ?? nonEmpty(env.STACCATO_TOKEN) ?? file.token }
}

function nonEmpty (text: string | undefined): string | undefined {
  return text === undefined || text === '' ? undefined : text
}

export interface RequestOptions {
  body?: unknown
  headers?: Record<string, string>
  query?: Record<string, string | number | undefined>
  /** For long polls: how long to wait for an answer. */
  timeoutMs?: number
  signal?: AbortSignal
}

/** Talks to the coordinator's REST API; every failure becomes a CliError with one clear line. */
export class ApiClient {
  readonly url: string
  readonly #token?: string

  constructor (settings: ClientSettings) {
    this.url = settings.url
    this.#token = settings.token
  }

  async request<T> (method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const target = new URL(this.url + path)
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) target.searchParams.set(k, String(v))
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers }
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`
    // Fastify answers 400 to a JSON content type with an empty body: send the header only with a body.
    if (opts.body !== undefined) headers['content-type'] = 'application/json'
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? REQUEST_TIMEOUT_MS)
    let res: Response
    try {
      res = await fetch(target, {
        method,
        headers,
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
        signal: opts.signal !== undefined ? AbortSignal.any([opts.signal, timeout]) : timeout
      })
    } catch (err) {
      if (opts.signal?.aborted === true) throw err
      throw this.#unreachable(err)
    }
    let text: string
    try {
      text = await res.text()
    } catch (err) {
      // An answer cut off mid-body: on success that is a network failure, not an empty result; on an error status, the status says enough.
      if (res.ok) throw this.#unreachable(err)
      text = ''
    }
    if (res.ok) return (text === '' ? undefined : JSON.parse(text)) as T
    throw this.#httpError(res.status, text)
  }

  #unreachable (err: unknown): CliError {
    const e = err as { name?: string, message?: string, cause?: { code?: string, message?: string } }
    const reason = e.name === 'TimeoutError' ? 'no answer in time' : e.cause?.code ?? e.cause?.message ?? e.message ?? String(err)
    return new CliError('unavailable', `cannot reach the coordinator at ${this.url}: ${reason} — is it running? set --url or STACCATO_URL`, 1)
  }

  #httpError (status: number, text: string): CliError {
    let body: { code?: string, message?: string, [k: string]: unknown } = {}
    try {
      body = JSON.parse(text) as typeof body
    } catch {
      // Not JSON (a proxy's error page): the text itself is told below.
    }
    const code = body.code ?? `http_${status}`
    const message = body.message ?? (text.trim() || `HTTP ${status}`)
    if (status === 401) {
      const hint = this.#token === undefined ? 'no token was given' : 'the token was refused'
      return new CliError(code, `the coordinator at ${this.url} wants a valid API token (${hint}: ${message}) — set --token, STACCATO_TOKEN or "token" in ${defaultClientConfigPath()}`, 1, status)
    }
    if (status === 403) return new CliError(code, `not allowed: ${message}`, 1, status)
    // 400 and 422 say the command line asked for something invalid.
    return new CliError(code, `${message} (${code})`, status === 400 || status === 422 ? 2 : 1, status, body)
  }
}

export async function connect (flags: ClientFlags): Promise<ApiClient> {
  return new ApiClient(await clientSettings(flags))
}

/** --url, --token, --config and --json, on every command that talks to the REST API. */
export function addClientOptions (cmd: Command): Command {
  return cmd
    .option('--url <url>', `coordinator REST API (env STACCATO_URL; default ${DEFAULT_URL})`)
    .option('--token <token>', 'API token (env STACCATO_TOKEN)')
    .option('--config <file>', 'client config file with url and token (default ~/.config/staccato/client.json)')
    .option('--json', 'print machine-readable JSON only')
}

/** A mistake on the command line: exit code 2. */
export function usageError (message: string): CliError {
  return new CliError('invalid_argument', message, 2)
}

export function printJson (value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
}

/** Left-aligned columns separated by two spaces. */
export function table (rows: string[][]): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, cell.length) })
  return rows.map(row => row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i])).join('  ')).join('\n') + '\n'
}
