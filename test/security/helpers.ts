import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildApi } from '../../coordinator/api/index.ts'
import type { ApiOptions } from '../../coordinator/api/index.ts'
import type { AgentRecord } from '../../coordinator/model.ts'
import { TransferStore } from '../../coordinator/store.ts'
import { TokenStore } from '../../coordinator/tokens.ts'
import type { EventServices } from '../../coordinator/events/index.ts'

export const ADMIN = 'stc_security-test-bootstrap-admin-token-0123456789'

export interface Answer { status: number, body: any, text: string, headers: Headers } // eslint-disable-line @typescript-eslint/no-explicit-any

export function agentRecord (name: string, volumes: Array<{ name: string, readOnly: boolean }>): AgentRecord {
  const at = '2025-01-01T00:00:00.000Z'
  return { name, peerId: `12D3KooW${name}`, addrs: [], volumes, plugins: ['agent', 'random', 'null', 'http', 'https'], version: '0.1.0', online: true, enrolledAt: at, lastSeenAt: at }
}

/**
 * The coordinator's API in this process over a real socket, with its real
 * stores (LevelDB) in a temporary directory, the bootstrap admin token kept
 * hashed like the coordinator keeps it, and a clock the test moves.
 */
export class SecureApi {
  readonly dir: string
  readonly opts: Partial<ApiOptions>
  readonly withEvents?: (store: TransferStore) => EventServices
  events?: EventServices
  clock = Date.now()
  url = ''
  app!: FastifyInstance
  store!: TransferStore
  tokens!: TokenStore

  private constructor (dir: string, opts: Partial<ApiOptions>, withEvents?: (store: TransferStore) => EventServices) {
    this.dir = dir
    this.opts = opts
    this.withEvents = withEvents
  }

  /** withEvents: event services of the test's own making (webhook delivery running), instead of the API's default. */
  static async start (opts: Partial<ApiOptions> = {}, withEvents?: (store: TransferStore) => EventServices): Promise<SecureApi> {
    const api = new SecureApi(await mkdtemp(join(tmpdir(), 'staccato-security-')), opts, withEvents)
    await api.open()
    for (const name of ['store-1', 'store-2', 'compute-1']) {
      await api.store.putAgent(agentRecord(name, [{ name: 'images', readOnly: false }, { name: 'scratch', readOnly: false }, { name: 'archive', readOnly: true }]))
    }
    return api
  }

  async open (): Promise<void> {
    this.store = await TransferStore.open(join(this.dir, 'store'))
    this.tokens = await TokenStore.open(join(this.dir, 'tokens'), { now: () => this.clock })
    await this.tokens.ensureBootstrap(ADMIN)
    this.events = this.withEvents?.(this.store)
    if (this.events !== undefined) {
      await this.events.open()
      this.events.start()
    }
    this.app = buildApi({ ...this.opts, store: this.store, tokenStore: this.tokens, events: this.events })
    this.url = await this.app.listen({ host: '127.0.0.1', port: 0 })
  }

  /** Stops and opens again on the same directories: what a coordinator restart keeps. */
  async restart (): Promise<void> {
    await this.close()
    await this.open()
  }

  async close (): Promise<void> {
    await this.app.close()
    await this.events?.close()
    await this.store.close()
    await this.tokens.close()
  }

  async stop (): Promise<void> {
    await this.close()
    await rm(this.dir, { recursive: true, force: true })
  }

  async call (method: string, path: string, opts: { token?: string | null, body?: unknown, raw?: string, headers?: Record<string, string> } = {}): Promise<Answer> {
    const token = opts.token === undefined ? ADMIN : opts.token
    const headers: Record<string, string> = { ...opts.headers }
    if (token !== null) headers.authorization = `Bearer ${token}`
    if (opts.body !== undefined || opts.raw !== undefined) headers['content-type'] ??= 'application/json'
    const res = await fetch(this.url + path, { method, headers, body: opts.raw ?? (opts.body !== undefined ? JSON.stringify(opts.body) : undefined) })
    const text = await res.text()
    let body: unknown
    try { body = text === '' ? undefined : JSON.parse(text) } catch { body = undefined }
    return { status: res.status, body, text, headers: res.headers }
  }

  /** A new API token made through the API by the admin. */
  async mint (role: string, tenant: string, extra: Record<string, unknown> = {}): Promise<{ id: string, token: string }> {
    const res = await this.call('POST', '/v1/tokens', { body: { role, tenant, ...extra } })
    if (res.status !== 201) throw new Error(`token create answered ${res.status}: ${res.text}`)
    return res.body
  }
}

/** Every file under dir, read raw, as one latin1 string per file: for looking for secrets at rest. */
export async function filesUnder (dir: string): Promise<Array<{ path: string, bytes: string }>> {
  const out: Array<{ path: string, bytes: string }> = []
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    out.push({ path, bytes: (await readFile(path)).toString('latin1') })
  }
  return out
}
