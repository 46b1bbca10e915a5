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
 *   m!seq                   highest event sequence number written
 */

const SEQ_WIDTH = 16

export const keys = {
  transfer: (id: string) => `t!${id}`,
  state: (state: TransferState, id: string) => `s!${state}!${id}`,
  // Tenants are ours, but encoding keeps a `!` in one from colliding with the key separator.
  idempotency: (tenant: string, key: string) => `i!${encodeURIComponent(tenant).replaceAll('!', '%21')}!${key}`,
  event: (seq: number) => `e!${String(seq).padStart(SEQ_WIDTH, '0')}`,
  agent: (name: string) => `a!${name}`,
  seq: 'm!seq'
}

export function range (prefix: 't' | 's' | 'i' | 'e' | 'a'): { gt: string, lt: string } {
  return { gt: `${prefix}!`, lt: `${prefix}~` }
}
