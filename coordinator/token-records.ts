import { Level } from 'level'
import type pg from 'pg'
import { CHANGES_CHANNEL } from './store-pg-schema.ts'

/**
 * Where the token store keeps its records: API tokens under `k!<id>`, join
 * tokens under `j!<id>`. Each put is durable before it resolves (a
 * revocation or a spent single-use token must survive a crash).
 */
export interface TokenRecords {
  readonly open: boolean
  /** The records as stored; tokens.ts knows their shape. */
  load (): Promise<{ api: unknown[], join: unknown[] }>
  put (key: string, value: unknown): Promise<void>
  close (): Promise<void>
  /** One record as stored now (undefined: none). */
  get (key: string): Promise<unknown>
  /**
   * Records shared with other processes (PostgreSQL replicas): `listener`
   * hears the key of each record changed anywhere (`*`: anything may have
   * changed); the token store reads it again.
   */
  watch?: (listener: (key: string) => void) => void
}

/** The embedded default: a LevelDB of its own (`<data dir>/tokens`), as before the store contract. */
export async function levelTokenRecords (dir: string): Promise<TokenRecords> {
  const db = new Level<string, unknown>(dir, { valueEncoding: 'json' })
  await db.open()
  return {
    get open () { return db.status === 'open' },
    async load () {
      return {
        api: await db.values({ gt: 'k!', lt: 'k~' }).all(),
        join: await db.values({ gt: 'j!', lt: 'j~' }).all()
      }
    },
    async put (key, value) { await db.batch([{ type: 'put', key, value }], { sync: true }) },
    async get (key) { return await db.get(key) },
    async close () { await db.close() }
  }
}

/** The `tokens` table of a PostgreSQL store (migration 2, store-pg-schema.ts), through the store's pool. */
export function pgTokenRecords (pool: pg.Pool, watch: (listener: (key: string) => void) => void): TokenRecords {
  let open = true
  return {
    get open () { return open },
    async load () {
      const rows = (await pool.query<{ key: string, value: unknown }>('SELECT key, value FROM tokens ORDER BY key')).rows
      return { api: rows.filter(r => r.key.startsWith('k!')).map(r => r.value), join: rows.filter(r => r.key.startsWith('j!')).map(r => r.value) }
    },
    async put (key, value) {
      // The notification goes out with the commit: every replica reads the record again (a revocation reaches them all).
      await pool.query(`WITH put AS (INSERT INTO tokens (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value RETURNING key)
        SELECT pg_notify('${CHANGES_CHANNEL}', 't' || key) FROM put`, [key, JSON.stringify(value)])
    },
    async get (key) {
      return (await pool.query<{ value: unknown }>('SELECT value FROM tokens WHERE key = $1', [key])).rows[0]?.value
    },
    watch,
    // The pool is the store's: it closes it.
    async close () { open = false }
  }
}
