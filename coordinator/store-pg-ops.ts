import type pg from 'pg'
import type { AgentRecord, StoreEvent, TransferRecord } from './model.ts'
import { withoutPieces } from './store-records.ts'
import { storedTreeFile } from './store-tree-files.ts'
import type { StoredTreeFile, TreeFileRow } from './store-tree-files.ts'

/**
 * What writes change in the PostgreSQL store, recorded instead of sent: a
 * group of writes reaches the database as one statement per table and kind
 * of change (see flushOps), not as a few round trips per write. Changes to
 * one row are coalesced, the later write winning, so that no multi-row
 * statement touches a row twice (PostgreSQL refuses that for ON CONFLICT).
 */
export class WriteOps {
  /** New transfers, as they stand at the end of the writes. */
  readonly inserts = new Map<string, TransferRecord>()
  readonly updates = new Map<string, TransferRecord>()
  readonly deletes = new Set<string>()
  readonly pieces = new Map<string, string[]>()
  /** Idempotency keys by `tenant \0 key`. */
  readonly keys = new Map<string, { tenant: string, key: string, id: string }>()
  readonly agents = new Map<string, AgentRecord | null>()
  readonly aux = new Map<string, { value: unknown } | null>()
  readonly events: StoreEvent[] = []
  /** Tree transfers' file rows by `id \0 path`, the later report winning. */
  readonly treeFiles = new Map<string, [string, string, string, StoredTreeFile]>()

  insertTransfer (record: TransferRecord): void { this.inserts.set(record.id, record) }

  updateTransfer (record: TransferRecord): void {
    if (this.inserts.has(record.id)) this.inserts.set(record.id, record)
    else this.updates.set(record.id, record)
  }

  deleteTransfer (id: string): void {
    this.inserts.delete(id)
    this.updates.delete(id)
    this.pieces.delete(id)
    for (const [k, v] of this.keys) if (v.id === id) this.keys.delete(k)
    for (const [k, row] of this.treeFiles) if (row[0] === id) this.treeFiles.delete(k)
    this.deletes.add(id)
  }

  putTreeFiles (id: string, rows: readonly TreeFileRow[]): void {
    for (const row of rows) this.treeFiles.set(`${id}\0${row.path}`, [id, row.path, row.state, storedTreeFile(row)])
  }

  /** Adds the changes of a later write. */
  merge (later: WriteOps): void {
    for (const id of later.deletes) this.deleteTransfer(id)
    for (const record of later.inserts.values()) this.insertTransfer(record)
    for (const record of later.updates.values()) this.updateTransfer(record)
    for (const [id, pieces] of later.pieces) this.pieces.set(id, pieces)
    for (const [k, v] of later.keys) this.keys.set(k, v)
    for (const [name, rec] of later.agents) this.agents.set(name, rec)
    for (const [key, value] of later.aux) this.aux.set(key, value)
    for (const [key, row] of later.treeFiles) this.treeFiles.set(key, row)
    this.events.push(...later.events)
  }
}

/** A parameter for a jsonb column: node-postgres would send a JS array as a PostgreSQL array. */
export function json (value: unknown): string {
  return JSON.stringify(value)
}

/**
 * A string as an SQL literal, as pg's escapeLiteral makes it (an E'' string
 * when it holds a backslash), with native replaces: a group's JSON runs to
 * hundreds of kilobytes and pg's version builds it a character at a time.
 */
export function literal (s: string): string {
  const quoted = s.replaceAll("'", "''")
  return s.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`
}

/**
 * The statements that send the changes, one per non-empty kind, as SQL
 * text with the values inlined: the group's commit sends them in the same
 * round trip as its COMMIT (store-pg.ts #commitTail). Their order keeps
 * coalesced changes right: deletes before inserts (an idempotency key freed
 * by a delete may name a new transfer in the same group).
 */
export function flushSql (ops: WriteOps): string[] {
  const out: string[] = []
  const q = (text: string, value: unknown): void => { out.push(text.replace('$1', () => `${literal(json(value))}::jsonb`)) }
  const ids = 'SELECT jsonb_array_elements_text($1)'
  if (ops.deletes.size > 0) {
    const gone = [...ops.deletes]
    q(`DELETE FROM transfers WHERE id IN (${ids})`, gone)
    q(`DELETE FROM transfer_pieces WHERE id IN (${ids})`, gone)
    q(`DELETE FROM idempotency_keys WHERE transfer_id IN (${ids})`, gone)
    q(`DELETE FROM tree_files WHERE id IN (${ids})`, gone)
  }
  if (ops.inserts.size > 0) {
    q('INSERT INTO transfers (id, tenant, state, record) SELECT r->>\'id\', r->>\'tenant\', r->>\'state\', r FROM jsonb_array_elements($1) r', [...ops.inserts.values()].map(withoutPieces))
  }
  if (ops.updates.size > 0) {
    q('UPDATE transfers t SET state = r->>\'state\', record = r FROM jsonb_array_elements($1) r WHERE t.id = r->>\'id\'', [...ops.updates.values()].map(withoutPieces))
  }
  if (ops.pieces.size > 0) {
    q('INSERT INTO transfer_pieces (id, pieces) SELECT p->>0, p->1 FROM jsonb_array_elements($1) p ON CONFLICT (id) DO UPDATE SET pieces = EXCLUDED.pieces', [...ops.pieces])
  }
  if (ops.keys.size > 0) {
    q('INSERT INTO idempotency_keys (tenant, key, transfer_id) SELECT k->>\'tenant\', k->>\'key\', k->>\'id\' FROM jsonb_array_elements($1) k ON CONFLICT (tenant, key) DO UPDATE SET transfer_id = EXCLUDED.transfer_id', [...ops.keys.values()])
  }
  const agentPuts = [...ops.agents.values()].filter(a => a !== null)
  const agentDels = [...ops.agents].filter(([, a]) => a === null).map(([name]) => name)
  if (agentPuts.length > 0) {
    q('INSERT INTO agents (name, record) SELECT a->>\'name\', a FROM jsonb_array_elements($1) a ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record', agentPuts)
  }
  if (agentDels.length > 0) q(`DELETE FROM agents WHERE name IN (${ids})`, agentDels)
  const auxPuts = [...ops.aux].filter(([, v]) => v !== null).map(([key, v]) => [key, (v as { value: unknown }).value])
  const auxDels = [...ops.aux].filter(([, v]) => v === null).map(([key]) => key)
  if (auxPuts.length > 0) {
    q('INSERT INTO aux (key, value) SELECT x->>0, x->1 FROM jsonb_array_elements($1) x ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', auxPuts)
  }
  if (auxDels.length > 0) q(`DELETE FROM aux WHERE key IN (${ids})`, auxDels)
  if (ops.treeFiles.size > 0) {
    q('INSERT INTO tree_files (id, path, state, file) SELECT f->>0, f->>1, f->>2, f->3 FROM jsonb_array_elements($1) f ON CONFLICT (id, path) DO UPDATE SET state = EXCLUDED.state, file = EXCLUDED.file', [...ops.treeFiles.values()])
  }
  if (ops.events.length > 0) {
    q('INSERT INTO events (seq, event) SELECT (e->>\'seq\')::bigint, e FROM jsonb_array_elements($1) e', ops.events)
  }
  return out
}

/** Sends the changes in one round trip (flushSql). */
export async function flushOps (client: pg.ClientBase, ops: WriteOps): Promise<void> {
  const sql = flushSql(ops)
  if (sql.length > 0) await client.query(sql.join('; '))
}
