import { InvalidArgumentError } from '../mesh/index.ts'
import { LevelTransferStore } from './store.ts'
import type { CoordinatorStore, StoreOptions } from './store-contract.ts'
import { PgTransferStore } from './store-pg.ts'

/** Where the coordinator keeps its state: `leveldb:<dir>` (embedded, the default) or a `postgres://…` URL. */
export type StoreSpec = { kind: 'leveldb', dir: string } | { kind: 'postgres', url: string }

export function parseStoreSpec (text: string): StoreSpec {
  if (text.startsWith('leveldb:')) {
    const dir = text.slice('leveldb:'.length)
    if (dir === '') throw new InvalidArgumentError('store: leveldb: needs a directory (leveldb:/var/lib/staccato/store)')
    return { kind: 'leveldb', dir }
  }
  if (/^postgres(ql)?:\/\//.test(text)) {
    try {
      void new URL(text)
    } catch {
      throw new InvalidArgumentError('store: not a valid postgres:// URL')
    }
    return { kind: 'postgres', url: text }
  }
  // The URL is not echoed: it may carry a password.
  throw new InvalidArgumentError('store: must be leveldb:<dir> or a postgres://user@host/database URL')
}

/** A store URL as it may be logged: without its password. */
export function describeStore (spec: StoreSpec): string {
  if (spec.kind === 'leveldb') return `leveldb:${spec.dir}`
  const url = new URL(spec.url)
  if (url.password !== '') url.password = '***'
  return url.href
}

export async function openStore (spec: StoreSpec, opts: StoreOptions = {}): Promise<CoordinatorStore> {
  return spec.kind === 'leveldb' ? await LevelTransferStore.open(spec.dir, opts) : await PgTransferStore.open(spec.url, opts)
}
