/**
 * Claims due webhook outbox entries (aux keys `o!…`) for one replica, in one
 * statement outside the write chain (it changes no memory): rows another
 * claimer holds locked are skipped, and a row claimed and committed since
 * this statement's snapshot is checked again on its new version (READ
 * COMMITTED re-evaluates a locked row), so no entry goes to two claimers at
 * once. The entry's own put (a retry) or delete takes its claim with it.
 * Parameters: $1 owner, $2 now, $3 claim until, $4 limit.
 */
export const CLAIM_OUTBOX_SQL = `UPDATE aux SET value = value || jsonb_build_object('claim', jsonb_build_object('owner', $1::text, 'until', $3::float8))
  WHERE key IN (
    SELECT key FROM aux
    WHERE key > 'o!' AND key < 'o~' AND (value->>'nextAt')::float8 <= $2 AND coalesce((value->'claim'->>'until')::float8, 0) < $2
    ORDER BY key LIMIT $4 FOR UPDATE SKIP LOCKED)
  RETURNING key, value`

/** The claimed rows in key order (the order the outbox delivers them). */
export function claimedEntries (rows: unknown[]): Array<[string, unknown]> {
  return rows.map(row => { const { key, value } = row as { key: string, value: unknown }; return [key, value] as [string, unknown] }).sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
}
