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
 * Sends the changes, one statement per non-empty kind, in an order that
 * keeps coalesced changes right: deletes before inserts (an idempotency key
 * freed by a delete may name a new transfer in the same group).
 */
export async function flushOps (client: pg.ClientBase, ops: WriteOps): Promise<void> {
  const q = async (text: string, value: unknown): Promise<void> => { await client.query(text, [value]) }
  if (ops.deletes.size > 0) {
    const ids = [...ops.deletes]
    await q('DELETE FROM transfers WHERE id = ANY($1::text[])', ids)
    await q('DELETE FROM transfer_pieces WHERE id = ANY($1::text[])', ids)
    await q('DELETE FROM idempotency_keys WHERE transfer_id = ANY($1::text[])', ids)
    await q('DELETE FROM tree_files WHERE id = ANY($1::text[])', ids)
  }
  if (ops.inserts.size > 0) {
    await q('INSERT INTO transfers (id, tenant, state, record) SELECT r->>\'id\', r->>\'tenant\', r->>\'state\', r FROM jsonb_array_elements($1::jsonb) r', json([...ops.inserts.values()].map(withoutPieces)))
  }
  if (ops.updates.size > 0) {
    await q('UPDATE transfers t SET state = r->>\'state\', record = r FROM jsonb_array_elements($1::jsonb) r WHERE t.id = r->>\'id\'', json([...ops.updates.values()].map(withoutPieces)))
  }
  if (ops.pieces.size > 0) {
    await q('INSERT INTO transfer_pieces (id, pieces) SELECT p->>0, p->1 FROM jsonb_array_elements($1::jsonb) p ON CONFLICT (id) DO UPDATE SET pieces = EXCLUDED.pieces', json([...ops.pieces]))
  }
  if (ops.keys.size > 0) {
    await q('INSERT INTO idempotency_keys (tenant, key, transfer_id) SELECT k->>\'tenant\', k->>\'key\', k->>\'id\' FROM jsonb_array_elements($1::jsonb) k ON CONFLICT (tenant, key) DO UPDATE SET transfer_id = EXCLUDED.transfer_id', json([...ops.keys.values()]))
  }
  const agentPuts = [...ops.agents.values()].filter(a => a !== null)
  const agentDels = [...ops.agents].filter(([, a]) => a === null).map(([name]) => name)
  if (agentPuts.length > 0) {
    await q('INSERT INTO agents (name, record) SELECT a->>\'name\', a FROM jsonb_array_elements($1::jsonb) a ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record', json(agentPuts))
  }
  if (agentDels.length > 0) await q('DELETE FROM agents WHERE name = ANY($1::text[])', agentDels)
  const auxPuts = [...ops.aux].filter(([, v]) => v !== null).map(([key, v]) => [key, (v as { value: unknown }).value])
  const auxDels = [...ops.aux].filter(([, v]) => v === null).map(([key]) => key)
  if (auxPuts.length > 0) {
    await q('INSERT INTO aux (key, value) SELECT x->>0, x->1 FROM jsonb_array_elements($1::jsonb) x ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', json(auxPuts))
  }
  if (auxDels.length > 0) await q('DELETE FROM aux WHERE key = ANY($1::text[])', auxDels)
  if (ops.treeFiles.size > 0) {
    await q('INSERT INTO tree_files (id, path, state, file) SELECT f->>0, f->>1, f->>2, f->3 FROM jsonb_array_elements($1::jsonb) f ON CONFLICT (id, path) DO UPDATE SET state = EXCLUDED.state, file = EXCLUDED.file', json([...ops.treeFiles.values()]))
  }
  if (ops.events.length > 0) {
    await q('INSERT INTO events (seq, event) SELECT (e->>\'seq\')::bigint, e FROM jsonb_array_elements($1::jsonb) e', json(ops.events))
  }
}
