import { createHash, randomBytes } from 'node:crypto'
import { InvalidArgumentError, Serial, StaccatoError } from '../mesh/index.ts'
import { TokenKind } from './token-kind.ts'
import type { TokenBase, TokenSource } from './token-kind.ts'
import { levelTokenRecords } from './token-records.ts'
import type { TokenRecords } from './token-records.ts'

export type { TokenSource }

/** Ascending power: each role may do what the roles before it may. */
export const ROLES = ['reader', 'operator', 'admin'] as const
export type Role = typeof ROLES[number]

/** A tenant name, or `*` (all tenants, admin tokens only). */
export const TENANT_PATTERN = '^[a-z0-9][a-z0-9._-]{0,62}$'
const TENANT = new RegExp(TENANT_PATTERN)
export const ALL_TENANTS = '*'

export interface ApiToken extends TokenBase { role: Role, tenant: string }
export interface JoinToken extends TokenBase {
  singleUse: boolean
  usedAt?: string
  usedBy?: { agent: string, peerId: string }
}

/** What listing shows: everything but the hash. */
export type ApiTokenView = Omit<ApiToken, 'hash'>
export type JoinTokenView = Omit<JoinToken, 'hash'>

export type JoinCheck = { ok: true, id: string } | { ok: false, reason: string }

export interface NewApiToken { role: Role, tenant: string, name?: string, expiresInSeconds?: number }
export interface NewJoinToken { name?: string, expiresInSeconds?: number, singleUse?: boolean }

const KEY = { api: 'k!', join: 'j!' } as const
// Ten years: beyond that an expiry is a typo, and Date would overflow long before the integer does.
const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600

export function hashToken (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

/** `90`, `90s`, `15m`, `1h`, `30d` → seconds. */
export function parseDuration (text: string | number, what = 'expiresIn'): number {
  const m = /^([0-9]{1,12})([smhd]?)$/.exec(String(text).trim())
  if (m === null) throw new InvalidArgumentError(`${what}: '${text}' must be a duration such as 90s, 15m, 1h or 30d`)
  const seconds = Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[m[2]]
  if (seconds < 1 || seconds > MAX_TTL_SECONDS) throw new InvalidArgumentError(`${what}: must be between 1 second and 10 years`)
  return seconds
}

/**
 * API bearer tokens and agent join tokens. Only sha256 hashes are kept, in
 * memory and in LevelDB: tokens are 256 random bits, so a hash is as good as
 * the token for checking and useless for presenting. Lookups go by hash: the
 * hash of what a client sends is not something it can steer byte by byte, so
 * the map lookup leaks nothing a timing attack could use; the final compare
 * is constant-time anyway.
 *
 * Revocation removes the hash from the lookup map before the write returns,
 * so the next request with that token is refused.
 *
 * The two kinds share every operation (token-kind.ts); this class adds what
 * differs: an API token's grant and refusal reasons, a join token's spending.
 */
export class TokenStore {
  readonly #db: TokenRecords | undefined
  readonly #now: () => number
  /** Hashes of revoked API tokens: their holders are told so (`refusal`). */
  readonly #revokedApiHashes = new Set<string>()
  readonly #api = new TokenKind<ApiToken>({ what: 'API token', prefix: KEY.api, idPrefix: 'tok_', secretPrefix: 'stc_', onRevoked: rec => this.#revokedApiHashes.add(rec.hash) })
  readonly #join = new TokenKind<JoinToken>({ what: 'join token', prefix: KEY.join, idPrefix: 'jt_', secretPrefix: 'stj_' })
  #configCount = 0
  #writes = new Serial()
  readonly #reads = new Serial()

  private constructor (db: TokenRecords | undefined, now: () => number) {
    this.#db = db
    this.#now = now
  }

  /** Tokens in their own LevelDB (the embedded default: `<data dir>/tokens`). */
  static async open (dir: string, opts: { now?: () => number } = {}): Promise<TokenStore> {
    return await TokenStore.over(await levelTokenRecords(dir), opts)
  }

  /** Tokens kept by `records` (LevelDB or PostgreSQL, token-records.ts); closing the store closes them. */
  static async over (records: TokenRecords, opts: { now?: () => number } = {}): Promise<TokenStore> {
    const store = new TokenStore(records, opts.now ?? Date.now)
    try {
      const { api, join } = await records.load()
      for (const rec of api as ApiToken[]) store.#api.index(rec)
      for (const rec of join as JoinToken[]) store.#join.index(rec)
    } catch (err) {
      await records.close()
      throw err
    }
    records.watch?.(key => { store.#refresh(key) })
    return store
  }

  /**
   * Another replica changed a token (created, revoked, spent): read it again.
   * Reads run one at a time and each reads the record as it is now, so the
   * last notification leaves memory as the database is.
   */
  #refresh (key: string): void {
    const db = this.#db
    if (db === undefined) return
    void this.#reads.run(async () => {
      if (!db.open) return
      if (key === '*') {
        const { api, join } = await db.load()
        for (const rec of api as ApiToken[]) follow(this.#api, rec)
        for (const rec of join as JoinToken[]) follow(this.#join, rec)
        return
      }
      const rec = await db.get(key) as TokenBase | undefined
      if (rec === undefined) return
      if (key.startsWith(KEY.api)) follow(this.#api, rec as ApiToken)
      else if (key.startsWith(KEY.join)) follow(this.#join, rec as JoinToken)
    }).catch(() => {
      // The database is unreachable: the reconnect after it sends '*'.
    })
  }

  /** A store that forgets everything on exit: for an API built without a data directory (tests). */
  static memory (opts: { now?: () => number } = {}): TokenStore {
    return new TokenStore(undefined, opts.now ?? Date.now)
  }

  async close (): Promise<void> {
    await this.#writes.idle()
    await this.#db?.close()
  }

  // ---- API tokens ----------------------------------------------------------

  /** A token given in the configuration: kept (hashed) in memory only, and not revocable through the API. */
  addConfigToken (token: string, grant: { role?: Role, tenant?: string, name?: string } = {}): ApiTokenView {
    if (token.length === 0) throw new InvalidArgumentError('an API token must not be empty')
    const role = grant.role ?? 'admin'
    const tenant = grant.tenant ?? ALL_TENANTS
    checkGrant(role, tenant)
    return view(this.#addConfig(this.#api, token, { name: grant.name, role, tenant }))
  }

  async create (input: NewApiToken): Promise<{ token: string, record: ApiTokenView }> {
    checkGrant(input.role, input.tenant)
    return await this.#create(this.#api, input, { role: input.role, tenant: input.tenant })
  }

  /**
   * The token generated on first start (its clear copy is the operator's file
   * in the data directory). Added once: a bootstrap token revoked through the
   * API stays revoked across restarts even though its file is still there.
   */
  async ensureBootstrap (token: string): Promise<void> {
    await this.#ensureBootstrap(this.#api, token, { role: 'admin', tenant: ALL_TENANTS })
  }

  list (): ApiTokenView[] {
    return this.#api.all().map(view)
  }

  async revoke (id: string): Promise<ApiTokenView> {
    return view(await this.#revoke(this.#api, id))
  }

  /**
   * Why a token the store knows is refused: 'token revoked' or 'token
   * expired'. Only a caller who holds the token's secret can get either, so
   * it learns nothing about other tokens; an unknown token gets undefined.
   */
  refusal (presented: string): 'token revoked' | 'token expired' | undefined {
    const hash = hashToken(presented)
    if (this.#revokedApiHashes.has(hash)) return 'token revoked'
    const rec = this.#api.byHash(hash)
    return rec !== undefined && this.#expired(rec) ? 'token expired' : undefined
  }

  /** The live token with this clear text, or undefined (unknown, revoked and expired all look the same). */
  authenticate (presented: string): ApiTokenView | undefined {
    const rec = this.#api.find(presented)
    if (rec === undefined || this.#expired(rec)) return undefined
    return view(rec)
  }

  // ---- join tokens ---------------------------------------------------------

  addConfigJoinToken (token: string): void {
    if (token.length === 0) throw new InvalidArgumentError('a join token must not be empty')
    this.#addConfig(this.#join, token, { singleUse: false })
  }

  async ensureBootstrapJoinToken (token: string): Promise<void> {
    await this.#ensureBootstrap(this.#join, token, { singleUse: false })
  }

  async createJoinToken (input: NewJoinToken): Promise<{ token: string, record: JoinTokenView }> {
    return await this.#create(this.#join, input, { singleUse: input.singleUse ?? false })
  }

  listJoinTokens (): JoinTokenView[] {
    return this.#join.all().map(view)
  }

  async revokeJoinToken (id: string): Promise<JoinTokenView> {
    return view(await this.#revoke(this.#join, id))
  }

  /**
   * Checks a join token for a first registration and, if it is single-use,
   * spends it. The check and the spending happen before any await, so two
   * agents racing with one single-use token cannot both get in.
   */
  async useJoinToken (presented: string | undefined, who: { agent: string, peerId: string }): Promise<JoinCheck> {
    if (presented === undefined || presented === '') return { ok: false, reason: 'no join token' }
    const rec = this.#join.find(presented)
    if (rec === undefined) return { ok: false, reason: 'unknown or revoked join token' }
    if (this.#expired(rec)) return { ok: false, reason: `join token ${rec.id} expired at ${rec.expiresAt}` }
    if (rec.usedAt !== undefined && rec.singleUse) return { ok: false, reason: `single-use join token ${rec.id} was used by ${rec.usedBy?.agent} at ${rec.usedAt}` }
    if (!rec.singleUse) return { ok: true, id: rec.id }
    const used: JoinToken = { ...rec, usedAt: new Date(this.#now()).toISOString(), usedBy: who }
    this.#join.index(used)
    await this.#put(KEY.join + rec.id, used)
    return { ok: true, id: rec.id }
  }

  // ---- what both kinds do --------------------------------------------------

  /** A token given in the configuration: in memory only, with an id of its own kind (`config-N`). */
  #addConfig<T extends TokenBase> (kind: TokenKind<T>, token: string, fields: Omit<T, keyof TokenBase> & { name?: string }): T {
    const rec = withoutUndefined({
      id: `config-${++this.#configCount}`, hash: hashToken(token), source: 'config', createdAt: new Date(this.#now()).toISOString(), ...fields
    } as unknown as T)
    kind.index(rec)
    return rec
  }

  async #create<T extends TokenBase> (kind: TokenKind<T>, input: { name?: string, expiresInSeconds?: number }, fields: Omit<T, keyof TokenBase>): Promise<{ token: string, record: Omit<T, 'hash'> }> {
    const token = `${kind.secretPrefix}${randomBytes(32).toString('base64url')}`
    const rec = withoutUndefined({ ...this.#base(kind.ids.next(this.#now()), token, 'api', input.name, input.expiresInSeconds), ...fields } as T)
    await this.#put(kind.prefix + rec.id, rec)
    kind.index(rec)
    return { token, record: view(rec) }
  }

  async #ensureBootstrap<T extends TokenBase> (kind: TokenKind<T>, token: string, fields: Omit<T, keyof TokenBase>): Promise<void> {
    if (kind.hasBootstrap()) return
    const rec = { ...this.#base(kind.ids.next(this.#now()), token, 'bootstrap', 'bootstrap'), ...fields } as T
    await this.#put(kind.prefix + rec.id, rec)
    kind.index(rec)
  }

  /** Revokes a token; revoking twice is a no-op. */
  async #revoke<T extends TokenBase> (kind: TokenKind<T>, id: string): Promise<T> {
    const revoked = kind.revoked(id, new Date(this.#now()).toISOString())
    if (revoked === undefined) return kind.get(id) as T
    // Refused from now on, even while the write is still on its way to disk.
    kind.index(revoked)
    await this.#put(kind.prefix + id, revoked)
    return revoked
  }

  #base (id: string, token: string, source: TokenSource, name?: string, expiresInSeconds?: number): TokenBase {
    const now = this.#now()
    return {
      id,
      name,
      hash: hashToken(token),
      source,
      createdAt: new Date(now).toISOString(),
      expiresAt: expiresInSeconds !== undefined ? new Date(now + expiresInSeconds * 1000).toISOString() : undefined
    }
  }

  #expired (rec: TokenBase): boolean {
    return rec.expiresAt !== undefined && Date.parse(rec.expiresAt) <= this.#now()
  }

  /** Writes one at a time and synced: a revocation or a spent single-use token must survive a crash. */
  #put (key: string, value: unknown): Promise<void> {
    const db = this.#db
    if (db === undefined) return Promise.resolve()
    return this.#writes.run(async () => {
      if (!db.open) throw new StaccatoError('unavailable', 'the token store is closed', true)
      await db.put(key, value)
    })
  }
}

/**
 * Takes a record read back from the database, unless memory is further on:
 * a revocation (or a spent single-use token) made here takes effect before
 * its write commits, and a read that raced it must not undo it.
 */
function follow<T extends TokenBase & { usedAt?: string }> (kind: TokenKind<T>, rec: T): void {
  const known = kind.get(rec.id)
  if (known !== undefined && ((known.revokedAt !== undefined && rec.revokedAt === undefined) || (known.usedAt !== undefined && rec.usedAt === undefined))) return
  kind.index(rec)
}

function checkGrant (role: Role, tenant: string): void {
  if (!ROLES.includes(role)) throw new InvalidArgumentError(`role: must be one of ${ROLES.join(', ')}`)
  if (tenant === ALL_TENANTS) {
    if (role !== 'admin') throw new InvalidArgumentError(`tenant: '*' (all tenants) is for admin tokens only`)
    return
  }
  if (!TENANT.test(tenant)) throw new InvalidArgumentError(`tenant: '${tenant}' must match ${TENANT_PATTERN} (or be '*' for an admin)`)
}

function view<T extends TokenBase> (rec: T): Omit<T, 'hash'> {
  const { hash: _hash, ...rest } = rec
  return rest
}

function withoutUndefined<T extends object> (obj: T): T {
  for (const key of Object.keys(obj) as Array<keyof T>) if (obj[key] === undefined) delete obj[key]
  return obj
}
