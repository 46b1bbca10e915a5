import { afterAll, beforeAll, describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import pg from 'pg'
import { TestMesh, sha256File } from '../helpers/mesh.ts'
import { postgresMissing, startPostgres } from '../helpers/postgres.ts'
import type { Postgres } from '../helpers/postgres.ts'

const missing = postgresMissing()
// CI installs postgresql (.ci/run): there a missing server is a failure, not a skip.
if (missing !== undefined && process.env.CI === 'true') throw new Error(missing)

interface Change { seq: number, topic: string, data: Record<string, unknown> }

describe.skipIf(missing !== undefined)(missing === undefined ? 'a coordinator on PostgreSQL' : `a coordinator on PostgreSQL (skipped: ${missing})`, () => {
  let server: Postgres
  let mesh: TestMesh | undefined
  beforeAll(async () => { server = await startPostgres() }, 120_000)
  afterAll(async () => {
    await mesh?.stop()
    await server?.stop()
  })

  it('runs a transfer to success, and after a coordinator SIGKILL and restart has the record and the feed intact', async () => {
    const url = await server.freshDatabase()
    mesh = await TestMesh.create()
    await mesh.startCoordinator(['--store', url])
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('compute-1')])
    const file = join(mesh.volume('store-1'), 'data.bin')
    await writeFile(file, randomBytes(3 * 1024 * 1024))
    const t = await mesh.submit('agent://store-1/vol/data.bin', 'agent://compute-1/vol/data.bin')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(await sha256File(join(mesh.volume('compute-1'), 'data.bin'))).toBe(await sha256File(file))
    const feed = async (): Promise<Change[]> => ((await mesh!.api('GET', '/v1/changes?after=0&limit=1000')).body as { items: Change[] }).items
    const before = await feed()
    const states = before.filter(e => e.topic === `transfer.${t.id}.state`).map(e => e.data.to)
    expect(states).toEqual(['queued', 'scheduled', 'active', 'verifying', 'succeeded'])

    // A long poll returns the next event: woken by the store announcing it once committed, or at once if the submit came first.
    const last = before[before.length - 1].seq
    const waiting = mesh.api('GET', `/v1/changes?after=${last}&wait=30&topics=${encodeURIComponent('transfer.#')}`)
    const second = await mesh.submit('agent://store-1/vol/data.bin', 'agent://compute-1/vol/second.bin')
    const woken = (await waiting).body as { items: Change[] }
    expect(woken.items[0]).toMatchObject({ topic: `transfer.${second.id}.state`, data: { to: 'queued' } })
    expect((await mesh.waitForState(second.id, ['succeeded', 'failed'])).state).toBe('succeeded')

    await mesh.kill('coordinator')
    await mesh.startCoordinator(['--store', url])
    expect(await mesh.transfer(t.id)).toEqual(done)
    // GET shows only what has committed (it once showed a success a group commit had not made durable yet): the
    // success seen just before the SIGKILL is there after it, with no redelivery from the agent needed.
    expect((await mesh.transfer(second.id)).state).toBe('succeeded')
    const after = await feed()
    // The restarted coordinator may add events of its own (agents coming back online), never change or drop one.
    expect(after.slice(0, before.length)).toEqual(before)
    expect(after.filter(e => e.topic === `transfer.${second.id}.state`).map(e => e.data.to)).toEqual(['queued', 'scheduled', 'active', 'verifying', 'succeeded'])
    // Nothing of the store went to the data directory: it holds the identity and tokens only.
    expect(await readdir(join(mesh.dir, 'coordinator'))).not.toContain('store')
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      expect((await client.query('SELECT state FROM transfers WHERE id = $1', [t.id])).rows).toEqual([{ state: 'succeeded' }])
    } finally {
      await client.end()
    }
  }, 240_000)
})
