import type pg from 'pg'

/**
 * The PostgreSQL schema, as numbered migrations. Each runs once, in its own
 * transaction, and is recorded in schema_migrations; a coordinator applies
 * the ones it lacks at start. A migration is never edited once released:
 * a change is a new one.
 *
 * Keys of the aux table sort by their bytes (COLLATE "C"), as LevelDB's do:
 * the events unit reads its ranges (`o!…`, `d!<webhook>!…`) in that order.
 */
export const MIGRATIONS: ReadonlyArray<{ version: number, name: string, sql: string }> = [
  {
    version: 1,
    name: 'transfers, events, agents, aux',
    sql: `
      CREATE TABLE transfers (
        id text COLLATE "C" PRIMARY KEY,
        tenant text NOT NULL,
        state text NOT NULL,
        record jsonb NOT NULL
      );
      CREATE INDEX transfers_state ON transfers (state);
      -- A distribution's piece list, written once, apart from the record rewritten by every progress report.
      CREATE TABLE transfer_pieces (id text COLLATE "C" PRIMARY KEY, pieces jsonb NOT NULL);
      CREATE TABLE idempotency_keys (
        tenant text NOT NULL,
        key text NOT NULL,
        transfer_id text NOT NULL,
        PRIMARY KEY (tenant, key)
      );
      CREATE INDEX idempotency_keys_transfer ON idempotency_keys (transfer_id);
      CREATE SEQUENCE event_seq;
      CREATE TABLE events (seq bigint PRIMARY KEY, event jsonb NOT NULL);
      CREATE TABLE agents (name text COLLATE "C" PRIMARY KEY, record jsonb NOT NULL);
      CREATE TABLE aux (key text COLLATE "C" PRIMARY KEY, value jsonb NOT NULL);
      CREATE TABLE store_meta (key text PRIMARY KEY, value jsonb NOT NULL);
    `
  },
  {
    version: 2,
    name: 'tokens',
    // Keys as in the LevelDB token store: k!<id> an API token, j!<id> a join token (hashes only).
    sql: 'CREATE TABLE tokens (key text COLLATE "C" PRIMARY KEY, value jsonb NOT NULL);'
  },
  {
    version: 3,
    name: 'tree files',
    // One row per file of a tree transfer; "C" collation pages by path in byte order, as LevelDB does.
    sql: 'CREATE TABLE tree_files (id text COLLATE "C" NOT NULL, path text COLLATE "C" NOT NULL, state text NOT NULL, file jsonb NOT NULL, PRIMARY KEY (id, path));'
  },
  {
    version: 4,
    name: 'event transaction ids',
    // Readers see an event only once every transaction older than its writer's has ended (EVENTS_VISIBLE).
    // Rows written before have ended long ago: 0 sorts below every transaction id. The default is set apart so
    // that adding the column does not rewrite the table.
    sql: `
      ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT '0';
      ALTER TABLE events ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
    `
  }
]

/**
 * The condition under which a reader may see an event (see store-pg.ts,
 * "Event seqs"): its writer's transaction is older than every transaction
 * still running, so no transaction that could still commit a lower seq is
 * left. Evaluated in the reading statement's own snapshot.
 */
export const EVENTS_VISIBLE = 'txid < pg_snapshot_xmin(pg_current_snapshot())'

/**
 * Advisory lock keys (two-int form): the class is 'STAC' in ASCII, so that
 * they cannot meet another application's locks in a shared database.
 */
export const LOCK_CLASS = 0x53544143
export const LOCKS = { migrate: 1, events: 2, leader: 3 } as const

/**
 * Reserves `size` event seqs for the transaction on this connection, with
 * its transaction id taken in the same step, under the events lock held for
 * these statements only: reservations are made in transaction id order, so
 * a transaction with lower seqs always has the lower id (EVENTS_VISIBLE
 * relies on it). Session-level: an error between lock and unlock leaves the
 * lock held, so the caller then discards the connection. Returns `last`.
 */
export function reserveSeqsSql (size: number): string {
  return `SELECT pg_advisory_lock(${LOCK_CLASS}, ${LOCKS.events}); SELECT pg_current_xact_id()::text AS xid, setval('event_seq', nextval('event_seq') + ${size - 1}) AS last; SELECT pg_advisory_unlock(${LOCK_CLASS}, ${LOCKS.events})`
}

/**
 * Gives back a block's unused seqs (from `next` to `last`) if no transaction
 * has reserved since, under the same lock as reserveSeqsSql: a later
 * reservation then starts at `next`, above every seq used by this block,
 * with a later transaction id. Same rule on errors.
 */
export function returnSeqsSql (next: number, last: number): string {
  return `SELECT pg_advisory_lock(${LOCK_CLASS}, ${LOCKS.events}); SELECT setval('event_seq', ${next}, false) FROM event_seq WHERE last_value = ${last} AND is_called; SELECT pg_advisory_unlock(${LOCK_CLASS}, ${LOCKS.events})`
}

/** The channel each commit that writes events notifies, with its highest seq as payload. */
export const EVENTS_CHANNEL = 'staccato_events'

/**
 * The channel each commit that changes a webhook (`w!…`), a callback secret
 * (`k!…` of the aux area) or a token notifies, so that every replica's
 * memory follows: payload `a<aux key>` or `t<token key>`.
 */
export const CHANGES_CHANNEL = 'staccato_changes'
/** Aux ranges whose changes replicas keep in memory (webhook-registry.ts). */
export const WATCHED_AUX = ['w!', 'k!'] as const

/**
 * Applies the migrations this database lacks. Two coordinators starting at
 * once serialize on an advisory lock: the second finds the work done.
 */
export async function migrate (client: pg.ClientBase): Promise<number[]> {
  await client.query('SELECT pg_advisory_lock($1, $2)', [LOCK_CLASS, LOCKS.migrate])
  try {
    await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())')
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(r => r.version))
    const known = Math.max(...MIGRATIONS.map(m => m.version))
    const newer = [...done].find(v => v > known)
    if (newer !== undefined) throw new Error(`the database has schema version ${newer}, newer than this coordinator knows (${known}): upgrade the coordinator`)
    const applied: number[] = []
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue
      await client.query('BEGIN')
      try {
        await client.query(m.sql)
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
        await client.query('COMMIT')
      } catch (err) {
        await client.query('ROLLBACK')
        throw err
      }
      applied.push(m.version)
    }
    return applied
  } finally {
    await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCKS.migrate])
  }
}
