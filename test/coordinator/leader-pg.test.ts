import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { pgLeaderLease } from '../../coordinator/leader-pg.ts'
import type { LeaderLease } from '../../coordinator/leader-lease.ts'
import { PgTransferStore } from '../../coordinator/store-pg.ts'
import { postgresMissing, startPostgres } from '../helpers/postgres.ts'
import type { Postgres } from '../helpers/postgres.ts'
import { transferInput } from './helpers.ts'

const missing = postgresMissing()
// CI installs postgresql (.ci/run): there a missing server is a failure, not a skip.
if (missing !== undefined && process.env.CI === 'true') throw new Error(missing)

/** Bounded: a lease that never changes fails the test instead of hanging it. */
async function waitUntil (cond: () => boolean, tries = 600): Promise<void> {
  for (let i = 0; i < tries && !cond(); i++) await new Promise(resolve => setTimeout(resolve, 50))
  expect(cond()).toBe(true)
}

async function sql (url: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await client.query(text, values)
  } finally {
    await client.end()
  }
}

describe.skipIf(missing !== undefined)(missing === undefined ? 'leader lease on PostgreSQL' : `leader lease on PostgreSQL (skipped: ${missing})`, () => {
  let server: Postgres
  beforeAll(async () => { server = await startPostgres() }, 120_000)
  afterAll(async () => { await server?.stop() })

  /**
   * Leases that poll every 100 ms, but the first one only once when `firstGone`: it stands for a
   * process that is killed or paused and does not come back to compete.
   */
  function leases (url: string, n: number, opts: { firstGone?: boolean } = {}): { leases: LeaderLease[], pids: Array<number | undefined> } {
    const pids: Array<number | undefined> = []
    const out = Array.from({ length: n }, (_, i) => pgLeaderLease({ url, pollMs: i === 0 && opts.firstGone === true ? 600_000 : 100, leaseMs: 2000, fence: pid => { if (pid !== undefined) pids[i] = pid } }))
    return { leases: out, pids }
  }

  it('lets exactly one of three lead; when it stops, another takes over', async () => {
    const url = await server.freshDatabase()
    const { leases: all } = leases(url, 3)
    try {
      await Promise.all(all.map(async l => { await l.start() }))
      await waitUntil(() => all.some(l => l.leader))
      expect(all.filter(l => l.leader)).toHaveLength(1)
      const first = all.find(l => l.leader) as LeaderLease
      const changes: boolean[] = []
      first.on('change', leader => { changes.push(leader) })
      await first.stop()
      expect(changes).toEqual([false])
      await waitUntil(() => all.some(l => l !== first && l.leader))
      expect(all.filter(l => l.leader)).toHaveLength(1)
    } finally {
      await Promise.all(all.map(async l => { await l.stop() }))
    }
  })

  it('hands the lease on when the leader\'s session dies, as a killed process\'s does', async () => {
    const url = await server.freshDatabase()
    const { leases: [a, b], pids } = leases(url, 2, { firstGone: true })
    try {
      await a.start()
      await waitUntil(() => a.leader)
      await b.start()
      await sql(url, 'SELECT pg_terminate_backend($1)', [pids[0]])
      await waitUntil(() => b.leader && !a.leader)
    } finally {
      await a.stop()
      await b.stop()
    }
  })

  it('ends the lease of a leader that stops sending heartbeats (paused) after the lease length', async () => {
    const url = await server.freshDatabase()
    // The paused leader's next heartbeat would come only after a minute: the server ends its idle session first.
    const a = pgLeaderLease({ url, pollMs: 60_000, leaseMs: 1000 })
    const b = pgLeaderLease({ url, pollMs: 100, leaseMs: 1000 })
    try {
      await a.start()
      expect(a.leader).toBe(true)
      await b.start()
      await waitUntil(() => b.leader)
    } finally {
      await a.stop()
      await b.stop()
    }
  })

  it('fences an old leader: its writes are refused once another holds the lease, and memory keeps nothing of them', async () => {
    const url = await server.freshDatabase()
    const store = await PgTransferStore.open(url)
    const { leases: [a, b], pids } = leases(url, 2, { firstGone: true })
    try {
      await a.start()
      await waitUntil(() => a.leader)
      store.setFence(pids[0])
      const { record } = await store.create(transferInput('a', 'b'), { tenant: 'default' })
      // The old leader has not noticed yet: its store still fences with the dead session's pid.
      await sql(url, 'SELECT pg_terminate_backend($1)', [pids[0]])
      await b.start()
      await waitUntil(() => b.leader)
      await expect(store.transition(record.id, 'scheduled')).rejects.toMatchObject({ code: 'unavailable' })
      await expect(store.create(transferInput('a', 'b'), { tenant: 'default' })).rejects.toMatchObject({ code: 'unavailable' })
      expect(store.get(record.id)?.state).toBe('queued')
      expect(store.size).toBe(1)
      store.setFence(undefined)
      await store.transition(record.id, 'scheduled')
      const rows = (await sql(url, 'SELECT state FROM transfers')).rows
      expect(rows).toEqual([{ state: 'scheduled' }])
    } finally {
      await a.stop()
      await b.stop()
      await store.close()
    }
  })
})
