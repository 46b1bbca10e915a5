import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnStaccato } from '../../cli/index.ts'
import { TransferStore } from '../../coordinator/store.ts'
import { PgTransferStore } from '../../coordinator/store-pg.ts'
import { TokenStore } from '../../coordinator/tokens.ts'
import { postgresMissing, startPostgres } from '../helpers/postgres.ts'
import type { Postgres } from '../helpers/postgres.ts'
import { transferInput } from './helpers.ts'

const missing = postgresMissing()
// CI installs postgresql (.ci/run): there a missing server is a failure, not a skip.
if (missing !== undefined && process.env.CI === 'true') throw new Error(missing)

const tenant = 'default'

describe.skipIf(missing !== undefined)(missing === undefined ? 'staccato coordinator migrate' : `staccato coordinator migrate (skipped: ${missing})`, () => {
  let server: Postgres
  let dir: string
  beforeAll(async () => {
    server = await startPostgres()
    dir = await mkdtemp(join(tmpdir(), 'staccato-migrate-'))
  }, 120_000)
  afterAll(async () => {
    await server?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('moves transfers (queued ones too), idempotency keys, the files of a tree, events and their seqs, agents, webhooks and tokens; refuses a database that has state', async () => {
    const storeDir = join(dir, 'store')
    const level = await TransferStore.open(storeDir)
    const tokens = await TokenStore.open(join(dir, 'tokens'))
    await tokens.ensureBootstrap('stc_bootstrap_for_migrate_test')
    const { token: reader } = await tokens.create({ role: 'reader', tenant })
    await tokens.close()
    const { record: queued } = await level.create(transferInput('a', 'b'), { tenant, idempotencyKey: 'once!with!bangs' })
    const { record: done } = await level.create(transferInput('a', 'b'), { tenant })
    await level.transition(done.id, 'canceled')
    await level.putAgent({ name: 'a', peerId: 'p', addrs: [], volumes: [], plugins: [], version: 't', online: true, enrolledAt: '2026-01-01T00:00:00.000Z', lastSeenAt: '2026-01-01T00:00:00.000Z' })
    await level.writeAux([{ type: 'put', key: 'w!hook_1', value: { url: 'http://127.0.0.1/' } }], { sync: true })
    // A tree's files: one report spread into rows by a listing, then two more still stored as reports, the last
    // replacing a row of the first.
    await level.putTreeFiles(queued.id, [{ path: 'a', state: 'done', size: 1 }, { path: 'b!c', state: 'failed', size: 2, error: { code: 'not_found', message: 'gone', retryable: false } }])
    await level.listTreeFiles(queued.id, { limit: 10 })
    await level.putTreeFiles(queued.id, [{ path: 'd', state: 'skipped', size: 3, reason: 'same size and mtime' }])
    await level.putTreeFiles(queued.id, [{ path: 'b!c', state: 'done', size: 2 }])
    const files = await level.listTreeFiles(queued.id, { limit: 10 })
    await level.putTreeFiles(queued.id, [{ path: 'e', state: 'done', size: 4 }])
    await level.trimEvents(1, 10)
    const events = await level.readEvents(0, 100)
    const seq = level.seq
    await level.close()

    const url = await server.freshDatabase()
    const log = join(dir, 'migrate.log')
    const run = async (): Promise<number | null> => {
      const child = spawnStaccato(['coordinator', 'migrate', '--from', `leveldb:${storeDir}`, '--to', url], log)
      const [code] = await once(child, 'exit') as [number | null]
      return code
    }
    expect(await run()).toBe(0)
    expect(JSON.parse((await readFile(log, 'utf8')).trim().split('\n')[0])).toMatchObject({ transfers: 2, agents: 1, idempotencyKeys: 1, tokens: 2, treeFiles: 4 })

    const pgStore = await PgTransferStore.open(url)
    try {
      expect(pgStore.get(queued.id)).toEqual(queued)
      expect(pgStore.get(done.id)?.state).toBe('canceled')
      expect(pgStore.queuedInOrder().map(r => r.id)).toEqual([queued.id])
      expect(await pgStore.readEvents(0, 100)).toEqual(events)
      expect(pgStore.trimmedThrough).toBe(1)
      expect(pgStore.getAgent('a')?.online).toBe(true)
      expect(await pgStore.listTreeFiles(queued.id, { limit: 10 })).toEqual({ items: [...files.items.slice(0, 3), { path: 'e', state: 'done', size: 4 }] })
      expect(await pgStore.readAux({ gt: 'w!', lt: 'w~' })).toEqual([['w!hook_1', { url: 'http://127.0.0.1/' }]])
      // The key still finds its transfer, and new events continue after the old seqs.
      expect(await pgStore.create(transferInput('a', 'b'), { tenant, idempotencyKey: 'once!with!bangs' })).toEqual({ record: queued, created: false })
      const next = await pgStore.appendEvent('agent.a.note', '*', {})
      expect(next.seq).toBeGreaterThan(seq)
      const pgTokens = await TokenStore.over(pgStore.tokenRecords())
      expect(pgTokens.authenticate('stc_bootstrap_for_migrate_test')).toMatchObject({ role: 'admin' })
      expect(pgTokens.authenticate(reader)).toMatchObject({ role: 'reader' })
      await pgTokens.close()
    } finally {
      await pgStore.close()
    }
    expect(await run()).not.toBe(0)
    expect(await readFile(log, 'utf8')).toMatch(/already holds coordinator state/)
  })
})
