import { Level } from 'level'
import pg from 'pg'
import { InvalidArgumentError } from '../mesh/index.ts'
import { PgTransferStore } from './store-pg.ts'
import { json } from './store-pg-ops.ts'
import { levelTokenRecords } from './token-records.ts'
import type { ChunkedTreeFile, StoredTreeFile } from './store-tree-files.ts'

/** Rows per INSERT: keeps one statement's parameter (a jsonb array) to a few MB. */
const CHUNK = 2000

export interface MigrationCounts {
  transfers: number
  events: number
  agents: number
  idempotencyKeys: number
  aux: number
  tokens: number
  /** Files of tree transfers, as `GET /v1/transfers/:id/files` lists them. */
  treeFiles: number
}

/**
 * Moves a single-node coordinator's state from its LevelDB directories to an
 * empty PostgreSQL database (`staccato coordinator migrate`): transfers in
 * every state (queued ones included) with their piece lists and idempotency
 * keys, the files of tree transfers, the event log with its seqs (a feed
 * cursor stays valid) and how far retention trimmed it, agents, the events unit's records (webhooks, outbox,
 * delivery log, callback secrets) and tokens (hashes only, as stored). It
 * reads the LevelDB keys as they are (store-keys.ts) and writes the rows
 * store-pg.ts reads, in one transaction: a failed migration leaves the
 * database empty. The coordinator must be stopped (LevelDB allows one
 * process).
 */
export async function migrateLevelToPostgres (from: { storeDir: string, tokensDir: string }, toUrl: string): Promise<MigrationCounts> {
  // Creates the schema; then refuses a database that already has state.
  await (await PgTransferStore.open(toUrl)).close()
  const db = new Level<string, unknown>(from.storeDir, { valueEncoding: 'json', createIfMissing: false })
  await db.open()
  const client = new pg.Client({ connectionString: toUrl })
  await client.connect()
  try {
    const used = (await client.query<{ n: string }>('SELECT (SELECT count(*) FROM transfers) + (SELECT count(*) FROM events) + (SELECT count(*) FROM agents) + (SELECT count(*) FROM aux) + (SELECT count(*) FROM tokens) AS n')).rows[0].n
    if (Number(used) > 0) throw new InvalidArgumentError('migrate: the PostgreSQL database already holds coordinator state; migrate into an empty one')
    const counts: MigrationCounts = { transfers: 0, events: 0, agents: 0, idempotencyKeys: 0, aux: 0, tokens: 0, treeFiles: 0 }
    await client.query('BEGIN')
    const insert = async (sql: string, rows: unknown[]): Promise<number> => {
      for (let i = 0; i < rows.length; i += CHUNK) await client.query(sql, [json(rows.slice(i, i + CHUNK))])
      return rows.length
    }
    const values = async (prefix: string): Promise<Array<[string, unknown]>> => await db.iterator({ gt: `${prefix}!`, lt: `${prefix}~` }).all() as Array<[string, unknown]>
    const transfers = (await values('t')).map(([, v]) => v as { id: string, tenant: string, state: string })
    counts.transfers = await insert('INSERT INTO transfers (id, tenant, state, record) SELECT r->>\'id\', r->>\'tenant\', r->>\'state\', r FROM jsonb_array_elements($1::jsonb) r', transfers)
    await insert('INSERT INTO transfer_pieces (id, pieces) SELECT p->>0, p->1 FROM jsonb_array_elements($1::jsonb) p', (await values('p')).map(([k, v]) => [k.slice(2), v]))
    // A tree's files: rows by path (f!<id>!<path>), then the agents' reports not yet spread into rows (g!<id>!<n>, in
    // order), a later one replacing an earlier row of the same path as a listing would (store.ts #spreadTreeChunks).
    const files = new Map<string, [string, string, string, StoredTreeFile]>()
    for (const [k, v] of await values('f')) {
      const rest = k.slice(2)
      const cut = rest.indexOf('!')
      const [id, path, stored] = [rest.slice(0, cut), rest.slice(cut + 1), v as StoredTreeFile]
      files.set(`${id}\0${path}`, [id, path, stored[0], stored])
    }
    for (const [k, v] of await values('g')) {
      const id = k.slice(2, k.lastIndexOf('!'))
      for (const [path, state, size, extra] of v as ChunkedTreeFile[]) files.set(`${id}\0${path}`, [id, path, state, [state, size, extra]])
    }
    counts.treeFiles = await insert('INSERT INTO tree_files (id, path, state, file) SELECT f->>0, f->>1, f->>2, f->3 FROM jsonb_array_elements($1::jsonb) f', [...files.values()])
    const idem = (await values('i')).map(([k, id]) => {
      // i!<tenant, URI-encoded with ! as %21>!<key>: the key itself may hold '!'.
      const rest = k.slice(2)
      const cut = rest.indexOf('!')
      return { tenant: decodeURIComponent(rest.slice(0, cut)), key: rest.slice(cut + 1), id }
    })
    counts.idempotencyKeys = await insert('INSERT INTO idempotency_keys (tenant, key, transfer_id) SELECT k->>\'tenant\', k->>\'key\', k->>\'id\' FROM jsonb_array_elements($1::jsonb) k', idem)
    const events = (await values('e')).map(([, v]) => v as { seq: number })
    counts.events = await insert('INSERT INTO events (seq, event) SELECT (e->>\'seq\')::bigint, e FROM jsonb_array_elements($1::jsonb) e', events)
    counts.agents = await insert('INSERT INTO agents (name, record) SELECT a->>\'name\', a FROM jsonb_array_elements($1::jsonb) a', (await values('a')).map(([, v]) => v))
    const aux: Array<[string, unknown]> = []
    for (const prefix of ['w', 'o', 'd', 'k']) aux.push(...await values(prefix))
    counts.aux = await insert('INSERT INTO aux (key, value) SELECT x->>0, x->1 FROM jsonb_array_elements($1::jsonb) x', aux)
    // The next seq continues after every one the LevelDB store gave out, written or reserved.
    const meta = new Map(await values('m'))
    const trimmed = Number(meta.get('m!trimmed') ?? 0)
    const last = Math.max(trimmed, Number(meta.get('m!seq') ?? 0), Number(meta.get('m!seqReserved') ?? 0), events.reduce((m, e) => Math.max(m, e.seq), 0))
    if (trimmed > 0) await client.query('INSERT INTO store_meta (key, value) VALUES (\'trimmed\', $1)', [json(trimmed)])
    if (last > 0) await client.query('SELECT setval(\'event_seq\', $1)', [last])
    const tokens = await levelTokenRecords(from.tokensDir)
    try {
      const { api, join } = await tokens.load()
      const rows = [...api.map(t => [`k!${(t as { id: string }).id}`, t]), ...join.map(t => [`j!${(t as { id: string }).id}`, t])]
      counts.tokens = await insert('INSERT INTO tokens (key, value) SELECT x->>0, x->1 FROM jsonb_array_elements($1::jsonb) x', rows)
    } finally {
      await tokens.close()
    }
    await client.query('COMMIT')
    return counts
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    await client.end()
    await db.close()
  }
}
