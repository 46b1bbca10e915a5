import type { TransferState } from './model.ts'

/**
 * LevelDB key layout. Every kind of key has its own prefix ending in `!`;
 * `~` sorts after every character used in our keys, so `<prefix>~` closes a
 * range.
 *
 *   t!<id>                  transfer record
 *   s!<state>!<id>          state index (written in the same batch as the record)
 *   i!<tenant>!<key>        idempotency key → transfer id
 *   e!<seq, 16 digits>      event
 *   a!<name>                agent record
 *   f!<id>!<path>           one file of a tree transfer ('"' closes an id's range: it follows '!')
 *   g!<id>!<n, 10 digits>   one report's tree files, in the order reported, until a listing spreads them into f!
 *   m!seq                   highest event sequence number written
 *   m!trimmed               highest event sequence number deleted by retention
 *
 * Aux ranges, owned by coordinator/events (the store writes them in order with everything else):
 *
 *   w!<webhook id>                        webhook subscription
 *   o!<seq, 16 digits>!<endpoint>         outbox: a delivery still to make (written in its event's batch)
 *   d!<endpoint>!<delivery id>            delivery log, oldest first
 *   k!<tenant>                            a tenant's signing secret for per-transfer callbacks
 */

const SEQ_WIDTH = 16
/** Reports per transfer: 10 digits hold 10^10, far beyond a tree's files / rows per report. */
const CHUNK_WIDTH = 10

export const keys = {
  transfer: (id: string) => `t!${id}`,
  /** A distribution's piece list, apart from its record (see onDisk in store.ts). */
  pieces: (id: string) => `p!${id}`,
  state: (state: TransferState, id: string) => `s!${state}!${id}`,
  // Tenants are ours, but encoding keeps a `!` in one from colliding with the key separator.
  idempotency: (tenant: string, key: string) => `i!${encodeURIComponent(tenant).replaceAll('!', '%21')}!${key}`,
  event: (seq: number) => `e!${String(seq).padStart(SEQ_WIDTH, '0')}`,
  agent: (name: string) => `a!${name}`,
  treeFile: (id: string, path: string) => `f!${id}!${path}`,
  /** The range of one transfer's tree files, after `after` when given. */
  treeFiles: (id: string, after?: string) => ({ gt: `f!${id}!${after ?? ''}`, lt: `f!${id}"` }),
  /** One report of a tree's files (the n-th of its transfer), kept whole until a listing spreads it into treeFile keys. */
  treeFileChunk: (id: string, n: number) => `g!${id}!${String(n).padStart(CHUNK_WIDTH, '0')}`,
  treeFileChunks: (id: string) => ({ gt: `g!${id}!`, lt: `g!${id}"` }),
  seq: 'm!seq',
  seqReserved: 'm!seqReserved',
  trimmed: 'm!trimmed',
  webhook: (id: string) => `w!${id}`,
  outbox: (seq: number, endpoint: string) => `o!${String(seq).padStart(SEQ_WIDTH, '0')}!${endpoint}`,
  delivery: (endpoint: string, id: string) => `d!${endpoint}!${id}`,
  tenantSecret: (tenant: string) => `k!${encodeURIComponent(tenant)}`
}

export type AuxPrefix = 'w' | 'o' | 'd' | 'k'
const AUX: readonly string[] = ['w', 'o', 'd', 'k'] satisfies AuxPrefix[]

/** A key (or, with `bound`, a range bound such as `w~`) of an aux range. */
export function isAuxKey (key: string, bound = false): boolean {
  return AUX.includes(key[0]) && (key[1] === '!' || (bound && key[1] === '~'))
}

export function range (prefix: 't' | 's' | 'i' | 'e' | 'a' | AuxPrefix): { gt: string, lt: string } {
  return { gt: `${prefix}!`, lt: `${prefix}~` }
}
