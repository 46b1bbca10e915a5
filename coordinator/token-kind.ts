import { createHash, timingSafeEqual } from 'node:crypto'
import { NotFoundError } from '../mesh/index.ts'
import { createIdGenerator } from './ids.ts'
import type { IdGenerator } from './ids.ts'
import { InvalidStateError } from './store-errors.ts'

/** Where a token came from: created through the API, generated on first start, or given on the command line. */
export type TokenSource = 'api' | 'bootstrap' | 'config'

/** What every kind of token keeps. */
export interface TokenBase {
  id: string
  name?: string
  /** Hex sha256 of the token: the clear token is shown once and never stored. */
  hash: string
  source: TokenSource
  createdAt: string
  expiresAt?: string
  revokedAt?: string
}

/**
 * One kind of token (API tokens, join tokens): its records by id, the live
 * ones by hash, its id generator and its key prefix in the store. Every
 * operation the two kinds share is written once, here; TokenStore says what
 * differs (the grant an API token carries, the spending of a join token).
 */
export class TokenKind<T extends TokenBase> {
  /** Names the kind in errors: 'API token', 'join token'. */
  readonly what: string
  /** The records' key prefix in the store. */
  readonly prefix: string
  /** The clear token's prefix, so that an operator sees which kind a secret is. */
  readonly secretPrefix: string
  readonly ids: IdGenerator
  readonly #byId = new Map<string, T>()
  readonly #byHash = new Map<string, T>()
  readonly #onRevoked: (rec: T) => void

  constructor (opts: { what: string, prefix: string, idPrefix: string, secretPrefix: string, onRevoked?: (rec: T) => void }) {
    this.what = opts.what
    this.prefix = opts.prefix
    this.secretPrefix = opts.secretPrefix
    this.ids = createIdGenerator(opts.idPrefix)
    this.#onRevoked = opts.onRevoked ?? (() => {})
  }

  /** Adds or replaces a record: a revoked one is no longer found by its hash. */
  index (rec: T): void {
    this.#byId.set(rec.id, rec)
    if (rec.revokedAt === undefined) this.#byHash.set(rec.hash, rec)
    else {
      this.#byHash.delete(rec.hash)
      this.#onRevoked(rec)
    }
    if (rec.source !== 'config') this.ids.seed(rec.id)
  }

  get (id: string): T | undefined {
    return this.#byId.get(id)
  }

  all (): T[] {
    return [...this.#byId.values()]
  }

  hasBootstrap (): boolean {
    return this.all().some(t => t.source === 'bootstrap')
  }

  /** The live (not revoked) record by hash, without asking whether it expired. */
  byHash (hash: string): T | undefined {
    return this.#byHash.get(hash)
  }

  /**
   * The live record whose token is `presented`. The lookup goes by hash (not
   * something a client can steer byte by byte); the final compare is
   * constant-time anyway.
   */
  find (presented: string): T | undefined {
    const digest = createHash('sha256').update(presented).digest()
    const rec = this.#byHash.get(digest.toString('hex'))
    if (rec === undefined || !timingSafeEqual(digest, Buffer.from(rec.hash, 'hex'))) return undefined
    return rec
  }

  /** The record revoked at `at`, or undefined when it already was; throws for an unknown or configured one. */
  revoked (id: string, at: string): T | undefined {
    const rec = this.#byId.get(id)
    if (rec === undefined) throw new NotFoundError(`no ${this.what} '${id}'`)
    if (rec.source === 'config') throw new InvalidStateError(`${this.what} '${id}' is given in the coordinator's configuration; remove it there and restart`)
    if (rec.revokedAt !== undefined) return undefined
    return { ...rec, revokedAt: at }
  }
}
