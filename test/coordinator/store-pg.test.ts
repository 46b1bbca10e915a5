import { afterAll, beforeAll, describe, it, expect, vi } from 'vitest'
import pg from 'pg'
import type { StoreEvent } from '../../coordinator/model.ts'
import { PgTransferStore } from '../../coordinator/store-pg.ts'
import { EVENTS_VISIBLE, MIGRATIONS } from '../../coordinator/store-pg-schema.ts'
import { TokenStore } from '../../coordinator/tokens.ts'
import { postgresMissing, startPostgres } from '../helpers/postgres.ts'
import type { Postgres } from '../helpers/postgres.ts'
import { transferInput } from './helpers.ts'
import { describeStoreConformance } from './store-conformance.ts'
import type { StoreHarness } from './store-conformance.ts'

const missing = postgresMissing()
// CI installs postgresql (.ci/run): there a missing server is a failure, not a skip.
if (missing !== undefined && process.env.CI === 'true') throw new Error(missing)

const tenant = 'default'

describe.skipIf(missing !== undefined)(missing === undefined ? 'PostgreSQL store' : `PostgreSQL store (skipped: ${missing})`, () => {
  let server: Postgres
  beforeAll(async () => { server = await startPostgres() }, 120_000)
  afterAll(async () => { await server?.stop() })

  async function fresh (): Promise<StoreHarness> {
    const url = await server.freshDatabase()
    const handle: StoreHarness = {
      store: await PgTransferStore.open(url),
      async reopen () {
        await handle.store.close()
        handle.store = await PgTransferStore.open(url)
        return handle.store
      },
      async cleanup () { await handle.store.close() },
      async hold () {
        // Another session's lock: the store's group flushes its rows, waits for it, and commits once it is gone.
        const locker = new pg.Client({ connectionString: url })
        await locker.connect()
        await locker.query('BEGIN; LOCK TABLE transfers, agents IN EXCLUSIVE MODE')
        let released = false
        const reached = (async () => {
          // Bounded: a write that never arrives fails the test instead of hanging it.
          for (let i = 0; i < 2000; i++) {
            const { rows } = await locker.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = \'Lock\'')
            if (rows[0].n > 0) return
            await new Promise(resolve => setTimeout(resolve, 5))
          }
          throw new Error('no write came to wait on the held commit')
        })()
        return {
          reached,
          async release () {
            if (released) return
            released = true
            await locker.query('COMMIT')
            await locker.end()
          }
        }
      }
    }
    return handle
  }

  describeStoreConformance('PostgreSQL', fresh)

  it('migrates once: two coordinators starting at once on an empty database, then a restart', async () => {
    const url = await server.freshDatabase()
    const [a, b] = await Promise.all([PgTransferStore.open(url), PgTransferStore.open(url)])
    await a.close()
    await b.close()
    const again = await PgTransferStore.open(url)
    await again.close()
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      const rows = (await client.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).rows
      expect(rows.map(r => r.version)).toEqual(MIGRATIONS.map(m => m.version))
    } finally {
      await client.end()
    }
  })

  it('keeps tokens in the same database: a revoked token and a spent single-use join token stay so across a restart', async () => {
    const url = await server.freshDatabase()
    let store = await PgTransferStore.open(url)
    let tokens = await TokenStore.over(store.tokenRecords())
    try {
      await tokens.ensureBootstrap('stc_bootstrap')
      const { token: reader, record } = await tokens.create({ role: 'reader', tenant: 'default' })
      await tokens.revoke(record.id)
      const join = await tokens.createJoinToken({ singleUse: true })
      const uses = await Promise.all([1, 2, 3].map(async i => await tokens.useJoinToken(join.token, { agent: `a${i}`, peerId: `p${i}` })))
      expect(uses.filter(u => u.ok)).toHaveLength(1)
      await tokens.close()
      await store.close()
      store = await PgTransferStore.open(url)
      tokens = await TokenStore.over(store.tokenRecords())
      await tokens.ensureBootstrap('stc_bootstrap')
      expect(tokens.authenticate('stc_bootstrap')).toMatchObject({ role: 'admin' })
      expect(tokens.authenticate(reader)).toBeUndefined()
      expect(tokens.list()).toHaveLength(2)
      expect((await tokens.useJoinToken(join.token, { agent: 'late', peerId: 'p' })).ok).toBe(false)
    } finally {
      await tokens.close()
      await store.close()
    }
  })

  it('refuses a database migrated by a newer coordinator', async () => {
    const url = await server.freshDatabase()
    await (await PgTransferStore.open(url)).close()
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    await client.query('INSERT INTO schema_migrations (version, name) VALUES (9999, \'from the future\')')
    await client.end()
    await expect(PgTransferStore.open(url)).rejects.toThrow(/schema version 9999/)
  })

  it('leaves out a write whose data the database refuses, commits the others of its group, and memory follows', async () => {
    const url = await server.freshDatabase()
    let store = await PgTransferStore.open(url)
    try {
      const { record } = await store.create(transferInput('a', 'b'), { tenant })
      // jsonb has no NUL character: PostgreSQL refuses it where LevelDB would store it. All five writes are handed in at once: one group.
      const results = await Promise.allSettled([
        store.transition(record.id, 'scheduled'),
        store.create({ ...transferInput('a', 'b'), labels: { note: 'nul\u0000' } }, { tenant }),
        store.appendEvent(`transfer.${record.id}.stalled`, tenant, { why: 'nul\u0000' }),
        store.transition(record.id, 'active'),
        store.putAgent({ name: 'a', peerId: 'p', addrs: [], volumes: [], plugins: [], version: 't', online: true, enrolledAt: '2026-01-01T00:00:00.000Z', lastSeenAt: '2026-01-01T00:00:00.000Z' })
      ])
      expect(results.map(r => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled', 'fulfilled'])
      expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'invalid_argument' })
      expect(store.size).toBe(1)
      const live = await store.readEvents(0, 10)
      expect(live.map(e => e.topic)).toEqual([`transfer.${record.id}.state`, `transfer.${record.id}.state`, `transfer.${record.id}.state`, 'agent.a.online'])
      await store.close()
      store = await PgTransferStore.open(url)
      expect(store.size).toBe(1)
      expect(store.get(record.id)?.state).toBe('active')
      expect(await store.readEvents(0, 10)).toEqual(live)
    } finally {
      await store.close()
    }
  })

  it('wakes a second store on the same database through NOTIFY: it announces the events and sees the records', async () => {
    const url = await server.freshDatabase()
    const writer = await PgTransferStore.open(url)
    const reader = await PgTransferStore.open(url)
    try {
      const heard: StoreEvent[] = []
      const three = new Promise<void>(resolve => {
        reader.on('event', ev => { heard.push(ev); if (heard.length === 3) resolve() })
      })
      const { record } = await writer.create(transferInput('a', 'b'), { tenant })
      await writer.transition(record.id, 'scheduled')
      await writer.transition(record.id, 'canceled')
      await three
      expect(heard).toEqual(await writer.readEvents(0, 10))
      expect(reader.get(record.id)).toEqual(writer.get(record.id))
      expect(reader.seq).toBe(writer.seq)
    } finally {
      await writer.close()
      await reader.close()
    }
  })

  it('a second store follows a removal and a transfer created and moved in one batch: memory as the writer\'s, \'removed\' announced', async () => {
    const url = await server.freshDatabase()
    const writer = await PgTransferStore.open(url)
    // A long read gap: after the first read, the rest arrives in one batch.
    const reader = await PgTransferStore.open(url, { announceGapMs: 300 })
    try {
      const removed: string[] = []
      reader.on('removed', rec => { removed.push(rec.id) })
      const { record: gone } = await writer.create(transferInput('a', 'b'), { tenant })
      await waitUntil(() => reader.get(gone.id) !== undefined)
      await writer.transition(gone.id, 'canceled')
      await writer.remove(gone.id)
      const { record: kept } = await writer.create(transferInput('a', 'c'), { tenant })
      await writer.transition(kept.id, 'scheduled')
      await waitUntil(() => reader.seq === writer.seq)
      expect(reader.get(gone.id)).toBeUndefined()
      expect(removed).toEqual([gone.id])
      expect(reader.get(kept.id)).toEqual(writer.get(kept.id))
      expect(reader.size).toBe(1)
    } finally {
      await writer.close()
      await reader.close()
    }
  })

  it('hears of events whose notification never came (a replica that died between its commit and its NOTIFY) at its next catch-up', async () => {
    const url = await server.freshDatabase()
    const writer = await PgTransferStore.open(url)
    const reader = await PgTransferStore.open(url, { catchUpMs: 50 })
    const raw = new pg.Client({ connectionString: url })
    await raw.connect()
    try {
      const heard: StoreEvent[] = []
      reader.on('event', ev => { heard.push(ev) })
      const { record } = await writer.create(transferInput('a', 'b'), { tenant })
      const [created] = await writer.readEvents(0, 1)
      await vi.waitFor(() => { expect(heard.map(e => e.seq)).toEqual([created.seq]) })
      // What a replica leaves when it dies just after its commit: an event in the log, and no NOTIFY naming it.
      await raw.query('BEGIN')
      const seq = Number((await raw.query<{ seq: string }>('SELECT nextval(\'event_seq\') AS seq')).rows[0].seq)
      await raw.query('INSERT INTO events (seq, event) VALUES ($1, $2::jsonb)', [seq, JSON.stringify({ ...created, seq, id: 'ev_orphaned' })])
      await raw.query('COMMIT')
      await vi.waitFor(() => { expect(heard.map(e => e.seq)).toEqual([created.seq, seq]) }, { timeout: 10_000 })
      expect(heard[1]).toEqual({ ...created, seq, id: 'ev_orphaned' })
      expect(reader.get(record.id)).toEqual(writer.get(record.id))
      expect(reader.seq).toBe(seq)
    } finally {
      await raw.end()
      await writer.close()
      await reader.close()
    }
  })

  it('notifies the commits made within the notification gap in one round, naming the highest seq', async () => {
    const url = await server.freshDatabase()
    const listener = new pg.Client({ connectionString: url })
    await listener.connect()
    const heard: string[] = []
    listener.on('notification', n => { if (n.channel === 'staccato_events') heard.push(n.payload ?? '') })
    await listener.query('LISTEN staccato_events')
    // Longer than the test: only the first round can go out before close(), which sends the rest at once.
    const store = await PgTransferStore.open(url, { notifyGapMs: 600_000 })
    try {
      // One after the other: each its own group and its own commit.
      for (let i = 0; i < 3; i++) await store.create(transferInput('a', 'b'), { tenant })
      const seqs = (await store.readEvents(0, 10)).map(e => String(e.seq))
      await vi.waitFor(() => { expect(heard).toEqual([seqs[0]]) })
      await store.close()
      await vi.waitFor(() => { expect(heard).toEqual([seqs[0], seqs[2]]) })
    } finally {
      await store.close()
      await listener.end()
    }
  })

  it('follows another writer even when its own commits run ahead of what it has read, and announces transitions made elsewhere', async () => {
    const url = await server.freshDatabase()
    const a = await PgTransferStore.open(url)
    const b = await PgTransferStore.open(url)
    try {
      const transitions: string[] = []
      a.on('transition', (rec, from) => { transitions.push(`${rec.id}:${from}>${rec.state}`) })
      // Each b write commits just before an a write: a's seq passes b's before a hears b's notification.
      const fromB: string[] = []
      for (let i = 0; i < 20; i++) {
        const [{ record }] = await Promise.all([b.create(transferInput('a', 'b'), { tenant }), a.create(transferInput('a', 'b'), { tenant })])
        fromB.push(record.id)
      }
      const last = fromB[fromB.length - 1]
      await b.transition(last, 'scheduled')
      await waitUntil(() => a.size === 40 && b.size === 40 && transitions.includes(`${last}:queued>scheduled`))
      expect(fromB.every(id => a.get(id) !== undefined)).toBe(true)
      expect(a.get(last)).toEqual(b.get(last))
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('keeps seqs strictly increasing for readers with two writers at once', async () => {
    const url = await server.freshDatabase()
    const a = await PgTransferStore.open(url)
    const b = await PgTransferStore.open(url)
    try {
      // A reader that polls while both write (with the readers' condition, EVENTS_VISIBLE) must never find a seq below one it has already seen: its cursor would skip it.
      let writing = true
      let late = 0
      const reader = (async () => {
        const client = new pg.Client({ connectionString: url })
        await client.connect()
        const seen = new Set<number>()
        let cursor = 0
        try {
          for (let polls = 0; writing && polls < 100_000; polls++) {
            const rows = (await client.query<{ seq: string }>(`SELECT seq FROM events WHERE ${EVENTS_VISIBLE} ORDER BY seq`)).rows.map(r => Number(r.seq))
            for (const seq of rows) {
              if (seen.has(seq)) continue
              if (seq <= cursor) late++
              seen.add(seq)
            }
            cursor = Math.max(cursor, rows.at(-1) ?? 0)
          }
        } finally {
          await client.end()
        }
      })()
      await Promise.all([a, b].flatMap(store => Array.from({ length: 40 }, (_, i) => store.create(transferInput('a', 'b', `${i}.img`), { tenant }))))
      writing = false
      await reader
      expect(late).toBe(0)
      const seqs = (await a.readEvents(0, 100)).map(e => e.seq)
      expect(seqs).toHaveLength(80)
      expect(new Set(seqs).size).toBe(80)
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1])
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('shows no event while a transaction holding a lower seq is still open, then both in seq order', async () => {
    const url = await server.freshDatabase()
    const store = await PgTransferStore.open(url)
    const first = new pg.Client({ connectionString: url })
    const second = new pg.Client({ connectionString: url })
    await first.connect()
    await second.connect()
    try {
      const heard: number[] = []
      store.on('event', ev => { heard.push(ev.seq) })
      // Two writers as the store's groups are: each takes its transaction id, then its seq; the first commits last.
      const reserve = async (client: pg.Client): Promise<number> => {
        await client.query('BEGIN')
        await client.query('SELECT pg_current_xact_id()')
        return Number((await client.query<{ seq: string }>('SELECT nextval(\'event_seq\') AS seq')).rows[0].seq)
      }
      const commit = async (client: pg.Client, seq: number): Promise<void> => {
        const event = { seq, id: `ev_${seq}`, time: new Date().toISOString(), topic: `agent.w${seq}.online`, tenant: '*', data: { online: true } }
        await client.query('INSERT INTO events (seq, event) VALUES ($1, $2)', [seq, JSON.stringify(event)])
        await client.query(`SELECT pg_notify('staccato_events', '${seq}'); COMMIT`)
      }
      const low = await reserve(first)
      const high = await reserve(second)
      expect(high).toBeGreaterThan(low)
      await commit(second, high)
      // The higher seq is committed, the lower may still commit: a reader that got the higher would move its cursor past the lower.
      expect(await store.readEvents(0, 10)).toEqual([])
      await commit(first, low)
      expect((await store.readEvents(0, 10)).map(e => e.seq)).toEqual([low, high])
      await waitUntil(() => heard.length >= 2)
      expect(heard).toEqual([low, high])
      expect(store.seq).toBe(high)
    } finally {
      await first.end()
      await second.end()
      await store.close()
    }
  })

  it('acknowledges a durable write while an older transaction elsewhere is open, and announces its event once that one ends', async () => {
    const url = await server.freshDatabase()
    const store = await PgTransferStore.open(url)
    // An operator's psql session: a transaction with an id, no events, left open.
    const session = new pg.Client({ connectionString: url })
    await session.connect()
    try {
      const heard: number[] = []
      store.on('event', ev => { heard.push(ev.seq) })
      await session.query('BEGIN')
      await session.query('SELECT pg_current_xact_id()')
      // Answered once committed (it used to wait for the announcement, i.e. for this session, up to a minute).
      const { record } = await store.create(transferInput('a', 'b'), { tenant })
      expect(store.get(record.id)?.state).toBe('queued')
      const other = await PgTransferStore.open(url)
      try {
        expect(other.get(record.id)?.state).toBe('queued')
      } finally {
        await other.close()
      }
      // The feed is held back: a lower seq could still belong to the open transaction.
      expect(heard).toEqual([])
      expect(await store.readEvents(0, 10)).toEqual([])
      await session.query('COMMIT')
      await waitUntil(() => heard.length === 1)
      expect((await store.readEvents(0, 10)).map(e => e.seq)).toEqual(heard)
    } finally {
      await session.end()
      await store.close()
    }
  })

  it('a group opened ahead while another commits, whose writes make no event, leaves no gap in the seqs', async () => {
    const url = await server.freshDatabase()
    const store = await PgTransferStore.open(url, { progressEventMs: 0 })
    try {
      const { record: first } = await store.create(transferInput('a', 'b', 'first.img'), { tenant })
      // Progress reports (no event) handed in turn by turn while the create's group runs and commits: some come during its commit.
      let done = false
      const created = store.create(transferInput('a', 'b', 'x.img'), { tenant }).finally(() => { done = true })
      const reports: Array<Promise<void>> = []
      for (let i = 0; i < 500 && !done; i++) {
        reports.push(store.setProgress(first.id, { bytesDone: i + 1 }))
        await new Promise(resolve => setImmediate(resolve))
      }
      await Promise.all([created, ...reports])
      const { record: last } = await store.create(transferInput('a', 'b', 'y.img'), { tenant })
      expect(store.get(first.id)?.progress?.bytesDone).toBe(reports.length)
      const seqs = (await store.readEvents(0, 10)).map(e => e.seq)
      expect(seqs).toEqual([seqs[0], seqs[0] + 1, seqs[0] + 2])
      // Nothing left open: another store reads the same.
      const other = await PgTransferStore.open(url)
      try {
        expect(other.get(first.id)?.progress?.bytesDone).toBe(reports.length)
        expect(other.get(last.id)?.state).toBe('queued')
      } finally {
        await other.close()
      }
    } finally {
      await store.close()
    }
  })

  it('gives a block of seqs back once: a group opened ahead that made no event, committing while the next opens ahead, leaves no seq to be handed out twice', async () => {
    const url = await server.freshDatabase()
    const store = await PgTransferStore.open(url)
    const other = await PgTransferStore.open(url)
    // Sessions holding a table: a write's commit stops there, waiting, until released.
    const hold = async (table: string): Promise<{ release: () => Promise<void> }> => {
      const locker = new pg.Client({ connectionString: url })
      await locker.connect()
      await locker.query(`BEGIN; LOCK TABLE ${table} IN EXCLUSIVE MODE`)
      return { release: async () => { await locker.query('COMMIT'); await locker.end() } }
    }
    /** Sessions of this database: waiting on a lock (a held commit), and open transactions at rest (a lock's holder, a group opened ahead). */
    const sessions = async (): Promise<{ waiting: number, open: number }> => {
      const c = new pg.Client({ connectionString: url })
      await c.connect()
      try {
        return (await c.query<{ waiting: number, open: number }>('SELECT count(*) FILTER (WHERE wait_event_type = \'Lock\')::int AS waiting, count(*) FILTER (WHERE state = \'idle in transaction\')::int AS open FROM pg_stat_activity WHERE datname = current_database()')).rows[0]
      } finally {
        await c.end()
      }
    }
    const until = async (what: string, ok: (s: { waiting: number, open: number }) => boolean): Promise<void> => {
      // Bounded: a state that never comes fails the test instead of hanging it.
      for (let i = 0; i < 2000; i++) {
        if (ok(await sessions())) return
        await new Promise(resolve => setTimeout(resolve, 5))
      }
      throw new Error(`never reached: ${what}`)
    }
    try {
      const events = await hold('events')
      const aux = await hold('aux')
      // A: an event, its commit held on the events table.
      const a = store.appendEvent('agent.a.note', '*', { n: 'a' })
      await until('A\'s commit held', s => s.waiting === 1)
      // B, handed in while A commits: its group is opened ahead (a block of seqs reserved) and B makes no event.
      const b = store.writeAux([{ type: 'put', key: 'w!b', value: { n: 'b' } }], { sync: true })
      await until('B\'s group opened ahead', s => s.open === 3)
      await events.release()
      await a
      // B's group commits, held on the aux table, its unused block to give back in its commit.
      await until('B\'s commit held', s => s.waiting === 1)
      // C, handed in while B's group commits: the next group opens ahead.
      const c = store.appendEvent('agent.a.note', '*', { n: 'c' })
      await until('C\'s group opened ahead', s => s.open === 2)
      await aux.release()
      await Promise.all([b, c])
      // D, another writer: its seqs come after every seq handed out, none again.
      const d = await other.appendEvent('agent.d.note', '*', { n: 'd' })
      const seqs = (await other.readEvents(0, 10)).map(e => e.seq)
      expect(new Set(seqs).size).toBe(seqs.length)
      expect(seqs).toHaveLength(3)
      expect(d.seq).toBe(Math.max(...seqs))
    } finally {
      await other.close()
      await store.close()
    }
  })

  it('commits a write while another transaction that notified is stuck in its commit (replicas\' commits do not queue behind each other\'s)', async () => {
    // PostgreSQL serializes committing transactions that notify, until each one's commit is done. A synchronous
    // standby that never comes holds such a commit open indefinitely: here another session's, with a notification
    // of its own; the store's database commits locally, so only that session waits.
    const url = await server.freshDatabase()
    const db = new URL(url).pathname.slice(1)
    const admin = new pg.Client({ connectionString: server.url })
    await admin.connect()
    await admin.query(`ALTER DATABASE ${db} SET synchronous_commit = local`)
    const store = await PgTransferStore.open(url)
    const session = new pg.Client({ connectionString: url })
    await session.connect()
    const stuck = async (): Promise<boolean> => (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND wait_event = \'SyncRep\'', [sessionPid])).rows[0].n === 1
    await session.query('CREATE TABLE stuck (i int)')
    const sessionPid = (await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid
    try {
      await admin.query('ALTER SYSTEM SET synchronous_standby_names = \'staccato_nobody\'')
      await admin.query('SELECT pg_reload_conf()')
      let commit: Promise<unknown> | undefined
      // The setting reaches the commit path once the server has reloaded it: until then a commit does not wait. Bounded.
      for (let i = 0; i < 200 && commit === undefined; i++) {
        // A commit waits for a standby only if its transaction wrote something besides its commit record.
        await session.query('SET synchronous_commit = on; BEGIN; INSERT INTO stuck VALUES (1); SELECT pg_notify(\'staccato_test\', \'x\')')
        const pending = session.query('COMMIT')
        for (let j = 0; j < 100 && !await stuck(); j++) await new Promise(resolve => setTimeout(resolve, 10))
        if (await stuck()) commit = pending
        else await pending
      }
      expect(commit).toBeDefined()
      const created = store.create(transferInput('a', 'b'), { tenant }).then(r => r.record)
      // Bounded: on the old code (the group's NOTIFY inside its own transaction) the create waits as long as the session.
      let record: Awaited<typeof created> | undefined
      const settled = created.then(r => { record = r }, () => {})
      for (let i = 0; i < 400 && record === undefined; i++) await Promise.race([settled, new Promise(resolve => setTimeout(resolve, 50))])
      expect(record?.state).toBe('queued')
      expect(await stuck()).toBe(true)
      expect(store.get(record?.id as string)?.state).toBe('queued')
      await admin.query('ALTER SYSTEM RESET synchronous_standby_names')
      await admin.query('SELECT pg_reload_conf()')
      await commit
    } finally {
      await admin.query('ALTER SYSTEM RESET synchronous_standby_names')
      await admin.query('SELECT pg_reload_conf()')
      await session.end()
      await store.close()
      await admin.query(`ALTER DATABASE ${db} RESET synchronous_commit`)
      await admin.end()
    }
  })
})

/** Waits for a condition that another process's notification makes true; bounded, so a lost notification fails the test. */
async function waitUntil (cond: () => boolean, tries = 600): Promise<void> {
  for (let i = 0; i < tries && !cond(); i++) await new Promise(resolve => setTimeout(resolve, 50))
  expect(cond()).toBe(true)
}
