import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { InjectOptions } from 'fastify'
import { buildApi } from '../../coordinator/api/index.ts'
import type { ApiOptions } from '../../coordinator/api/index.ts'
import type { AgentRecord, TransferRecord } from '../../coordinator/model.ts'
import { Level } from 'level'
import { TransferStore } from '../../coordinator/store.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { AgentSessions } from '../../coordinator/agent-sessions.ts'
import { systemClock } from '../../coordinator/clock.ts'
import { Dispatcher } from '../../coordinator/dispatch.ts'
import { DistributionManager } from '../../coordinator/distribution.ts'
import { createScheduler } from '../../coordinator/scheduler/index.ts'

/** A store in a fresh temporary directory; `reopen()` closes it and opens the same directory again. */
export async function tempStore (): Promise<{ dir: string, store: TransferStore, reopen: () => Promise<TransferStore>, cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'staccato-store-'))
  const handle = {
    dir,
    store: await TransferStore.open(dir),
    async reopen () {
      await handle.store.close()
      handle.store = await TransferStore.open(dir)
      return handle.store
    },
    async cleanup () {
      await handle.store.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
  return handle
}

export function agent (name: string, online = true): AgentRecord {
  return {
    name,
    peerId: `12D3KooW${name}`,
    addrs: ['/ip4/127.0.0.1/tcp/4001'],
    volumes: [{ name: 'images', readOnly: false }],
    plugins: ['file', 'random'],
    version: '0.1.0',
    online,
    enrolledAt: '2025-01-01T00:00:00.000Z',
    lastSeenAt: '2025-01-01T00:00:00.000Z'
  }
}

export function transferInput (from: string, to: string, file = 'a.img'): { source: string, destination: string } {
  return { source: `agent://${from}/images/${file}`, destination: `agent://${to}/images/${file}` }
}

/** Reads keys and values straight from a closed store's LevelDB, to check what is on disk. */
export async function rawEntries (dir: string, prefix: string): Promise<Array<[string, unknown]>> {
  const db = new Level<string, unknown>(dir, { valueEncoding: 'json' })
  try {
    return await db.iterator({ gt: `${prefix}!`, lt: `${prefix}~` }).all()
  } finally {
    await db.close()
  }
}

/** A store with agents a, b and c enrolled, and an API over it; `inject` adds the bearer token. */
export async function tempApi (opts: { onCancel?: (rec: TransferRecord) => void, tokens?: ApiOptions['tokens'], watch?: (store: TransferStore) => ApiOptions['watch'] } = {}) {
  const h = await tempStore()
  for (const name of ['a', 'b', 'c']) await h.store.putAgent(agent(name))
  const app = buildApi({ store: h.store, tokens: opts.tokens ?? [TOKEN], onCancel: opts.onCancel, watch: opts.watch?.(h.store) })
  return {
    app,
    store: h.store,
    inject (req: InjectOptions & { token?: string }) {
      const { token = TOKEN, ...rest } = req
      return app.inject({ ...rest, headers: { authorization: `Bearer ${token}`, ...rest.headers } })
    },
    async cleanup () {
      await app.close()
      await h.cleanup()
    }
  }
}

export const TOKEN = 'test-token-0123456789'

/** One line the dispatcher logged, with its level when it gave one. */
export interface LoggedLine { msg: string, fields?: Record<string, unknown>, level?: string }

/**
 * A real dispatcher over `store`, with no agent connected (its casts reach
 * no one) and a real distribution manager; what it logs goes to `logged`.
 */
export async function offlineDispatcher (store: TransferStore, logged: LoggedLine[]): Promise<{ dispatcher: Dispatcher, distributions: DistributionManager }> {
  const log = (msg: string, fields?: Record<string, unknown>, level?: string): void => { logged.push({ msg, fields, level }) }
  const key = await generateKeyPair('Ed25519')
  const agents = new AgentSessions(systemClock)
  const distributions = new DistributionManager({ store, agents, clock: systemClock, key, log, pieceSize: 1 << 20, peersPerParticipant: 8, ticketTtlSeconds: 60 })
  const dispatcher = new Dispatcher({
    store, agents, distributions, scheduler: createScheduler('fifo', {}), key, log,
    retryBaseMs: 100, retryMaxMs: 1000, graceMs: 0, ticketTtlSeconds: 60, clock: systemClock
  })
  return { dispatcher, distributions }
}
