import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sha256File } from '../helpers/mesh.ts'
import { spawnStaccato, stopProcess, waitForJson } from '../../cli/index.ts'
import { PgTransferStore } from '../../coordinator/store-pg.ts'
import { leaseHolderPid } from '../../coordinator/index.ts'
import { postgresMissing, startPostgres } from '../helpers/postgres.ts'
import type { Postgres } from '../helpers/postgres.ts'
import { api as apiAs, feed as feedAs, leaderPid, startReplica as start, until } from './replicas.ts'
import type { Replica } from './replicas.ts'
import { Receiver } from '../events/helpers.ts'

const missing = postgresMissing()
// CI installs postgresql (.ci/run): there a missing server is a failure, not a skip.
if (missing !== undefined && process.env.CI === 'true') throw new Error(missing)

const TOKEN = `stc_${randomBytes(24).toString('base64url')}`
const JOIN = `stj_${randomBytes(24).toString('base64url')}`
// A short claim, so that a dead replica's deliveries are taken over within seconds; the attempt timeout stays below it.
const WEBHOOKS = ['--webhook-allow', 'loopback', '--webhook-timeout', '1000', '--webhook-claim', '3000', '--webhook-interval', '100', '--webhook-retry-schedule', '200,500,1000']

describe.skipIf(missing !== undefined)(missing === undefined ? 'replicas on one PostgreSQL: webhooks, tokens, and the database itself killed' : `replicas on one PostgreSQL (skipped: ${missing})`, () => {
  let server: Postgres
  let base: string
  let receiver: Receiver
  let replicas: Replica[] = []
  const agents: ChildProcess[] = []
  beforeAll(async () => {
    server = await startPostgres()
    base = await mkdtemp(join(tmpdir(), 'staccato-replicas-'))
    receiver = await Receiver.start()
  }, 120_000)
  afterAll(async () => {
    await Promise.all([...agents, ...replicas.map(r => r.child)].map(async child => { await stopProcess(child) }))
    await receiver?.close()
    await server?.stop()
    if (base !== undefined) await rm(base, { recursive: true, force: true })
  })

  const api = async (r: Replica, method: string, path: string, body?: string, token = TOKEN): Promise<{ status: number, body: unknown }> => await apiAs(r, token, method, path, body)
  let started = 0
  const startReplica = async (url: string): Promise<Replica> => {
    const r = await start(base, url, started++, { token: TOKEN, join: JOIN, extra: WEBHOOKS })
    replicas.push(r)
    return r
  }
  const submitQueued = async (r: Replica, i: number): Promise<string> => {
    const res = await api(r, 'POST', '/v1/transfers', JSON.stringify({ source: 'agent://src-1/vol/in.bin', destination: `agent://dst-1/vol/out-${i}.bin` }))
    expect(res.status).toBe(201)
    return (res.body as { id: string }).id
  }
  const stateEvents = (id: string): string[] => receiver.deliveries.filter(d => d.status === 204 && d.event.topic === `transfer.${id}.state`).map(d => d.id)

  it('a token revoked on one replica is refused by the others; a webhook registered on one gets every replica\'s events, each once; a follower SIGKILLed mid-drain loses none', async () => {
    const url = await server.freshDatabase()
    // Enrolled, never connected: submits naming them are accepted and stay queued.
    const seed = await PgTransferStore.open(url)
    const now = new Date().toISOString()
    for (const name of ['src-1', 'dst-1']) await seed.putAgent({ name, peerId: `12D3KooW${name}`, addrs: [], volumes: [{ name: 'vol', readOnly: false }], plugins: ['agent'], version: 'test', online: false, enrolledAt: now, lastSeenAt: now })
    await seed.close()
    for (let n = 0; n < 3; n++) await startReplica(url)
    const [a, b, c] = replicas

    const created = await api(a, 'POST', '/v1/tokens', JSON.stringify({ role: 'operator', tenant: 'default' }))
    expect(created.status).toBe(201)
    const { token, id: tokenId } = created.body as { token: string, id: string }
    await until('replica B to accept the token made on A', async () => (await api(b, 'GET', '/v1/transfers?limit=1', undefined, token)).status === 200 ? true : undefined)
    expect((await api(a, 'DELETE', `/v1/tokens/${tokenId}`)).status).toBe(204)
    await until('replica B to refuse the token revoked on A', async () => (await api(b, 'GET', '/v1/transfers?limit=1', undefined, token)).status === 401 ? true : undefined)
    await until('replica C to refuse it too', async () => (await api(c, 'GET', '/v1/transfers?limit=1', undefined, token)).status === 401 ? true : undefined)

    const hook = await api(b, 'POST', '/v1/webhooks', JSON.stringify({ url: receiver.url, topics: ['transfer.*.state'] }))
    expect(hook.status).toBe(201)
    receiver.secret = (hook.body as { secret: string }).secret
    const hookId = (hook.body as { id: string }).id
    await until('every replica to know the webhook', async () => {
      for (const r of replicas) if ((await api(r, 'GET', `/v1/webhooks/${hookId}`)).status !== 200) return undefined
      return true
    })
    // Submitted round-robin: each replica's writes make outbox entries (a `queued` state event each, and no other: nothing runs).
    const ids: string[] = []
    for (let i = 0; i < 30; i++) ids.push(await submitQueued(replicas[i % 3], i))
    await receiver.until(() => ids.every(id => stateEvents(id).length > 0), 'a delivery of each transfer\'s queued event')
    // Every entry settled on the way: none left that could go again.
    await until('the deliveries to settle', async () => {
      const r = await api(a, 'GET', `/v1/webhooks/${hookId}/deliveries?limit=1000`)
      return (r.body as { items: unknown[] }).items.length >= 30 ? true : undefined
    })
    const delivered = receiver.deliveries.map(d => d.id)
    expect(new Set(delivered).size).toBe(delivered.length)
    expect(delivered).toHaveLength(30)
    expect(receiver.deliveries.every(d => d.verified && d.status === 204)).toBe(true)

    // Mid-drain: the receiver holds every request; a follower's attempts are open when it is SIGKILLed.
    const leaderPid = await leaseHolderPid(url)
    const follower = replicas.find(r => r.child.pid !== leaderPid) as typeof c
    expect(leaderPid).toBeDefined()
    receiver.deliveries.length = 0
    receiver.mode = 'hang'
    const late: string[] = []
    for (let i = 0; i < 6; i++) late.push(await submitQueued(follower, 100 + i))
    await receiver.until(d => d.length >= 4, 'the follower\'s attempts under way')
    follower.child.kill('SIGKILL')
    replicas = replicas.filter(r => r !== follower)
    receiver.mode = 'ok'
    await receiver.until(() => late.every(id => stateEvents(id).length > 0), 'every entry of the killed replica, delivered by a live one', 60_000)
    // The leader was not the one killed: it still holds the lease.
    expect(await leaseHolderPid(url)).toBe(leaderPid)
    process.stderr.write(`after the SIGKILL: ${receiver.deliveries.length} requests for ${late.length} entries (an attempt open at the kill is repeated: receivers dedupe by webhook-id)\n`)
  }, 600_000)

  it('SIGKILL of PostgreSQL under 3 replicas and 2 agents: the replicas answer 503 unavailable, recover once it is restarted, and every acknowledged transfer completes with its events once', async () => {
    await Promise.all(replicas.splice(0).map(async r => { await stopProcess(r.child) }))
    const url = await server.freshDatabase()
    for (let n = 0; n < 3; n++) await startReplica(url)
    const list = replicas.map(r => r.ready.multiaddrs[0]).join(',')
    const volume = (name: string): string => join(base, 'volumes', name)
    for (const name of ['src-a', 'dst-a']) {
      await mkdir(volume(name), { recursive: true })
      const readyFile = join(base, `${name}-ready.json`)
      const child = spawnStaccato([
        'agent', '--name', name, '--coordinator', list, '--join-token', JOIN, '--data-dir', join(base, 'agents', name),
        '--volume', `vol=${volume(name)}`, '--listen', '/ip4/127.0.0.1/tcp/0', '--ready-file', readyFile,
        // Throttled, so that transfers are still copying when the database dies.
        ...(name === 'src-a' ? ['--max-upload-rate', '4MiB'] : [])
      ], join(base, `${name}.log`))
      agents.push(child)
      await waitForJson(readyFile, child, 120_000, `agent ${name}`)
    }
    await until('both agents online', async () => {
      for (const name of ['src-a', 'dst-a']) if (((await api(replicas[0], 'GET', `/v1/agents/${name}`)).body as { online?: boolean }).online !== true) return undefined
      return true
    })
    const files = Array.from({ length: 4 }, (_, i) => `p${i}.bin`)
    for (const f of files) await writeFile(join(volume('src-a'), f), randomBytes(4 * 1024 * 1024))
    const ids: string[] = []
    const submit = async (r: Replica, f: string, to: string): Promise<{ status: number, body: unknown }> => await api(r, 'POST', '/v1/transfers', JSON.stringify({ source: `agent://src-a/vol/${f}`, destination: `agent://dst-a/vol/${to}` }))
    for (const [i, f] of files.entries()) {
      const res = await submit(replicas[i % 3], f, f)
      expect(res.status).toBe(201)
      ids.push((res.body as { id: string }).id)
    }
    const state = async (r: Replica, id: string): Promise<string> => ((await api(r, 'GET', `/v1/transfers/${id}`)).body as { state: string }).state
    await until('a transfer copying', async () => (await Promise.all(ids.map(async id => await state(replicas[0], id)))).includes('active') ? true : undefined)

    await server.kill()
    // Each replica answers, with a code: refused writes, not a crash.
    for (const r of replicas) {
      const res = await until('a refused submit', async () => {
        const got = await submit(r, files[0], 'during.bin')
        return got.status === 201 ? undefined : got
      })
      expect(res.status).toBe(503)
      expect((res.body as { code: string }).code).toBe('unavailable')
      expect(r.child.exitCode).toBeNull()
    }
    await server.restart()

    // Back: submits are taken again, on every replica.
    for (const [i, r] of replicas.entries()) {
      const res = await until('a submit accepted after the restart', async () => {
        const got = await submit(r, files[i], `after-${i}.bin`)
        return got.status === 201 ? got : undefined
      })
      ids.push((res.body as { id: string }).id)
    }
    await until('every acknowledged transfer to finish', async () => (await Promise.all(ids.map(async id => await state(replicas[0], id)))).every(s => s === 'succeeded' || s === 'failed') ? true : undefined, 3000)
    for (const id of ids) expect(await state(replicas[0], id)).toBe('succeeded')
    for (const f of files) expect(await sha256File(join(volume('dst-a'), f))).toBe(await sha256File(join(volume('src-a'), f)))
    await until('every replica to have every event', async () => {
      const lengths = new Set((await Promise.all(replicas.map(async r => await feedAs(r, TOKEN)))).map(f => f.length))
      return lengths.size === 1 ? true : undefined
    })
    const feeds = await Promise.all(replicas.map(async r => await feedAs(r, TOKEN)))
    for (const f of feeds) expect(f).toEqual(feeds[0])
    expect(new Set(feeds[0].map(e => e.id)).size).toBe(feeds[0].length)
    for (const id of ids) expect(feeds[0].filter(e => e.topic === `transfer.${id}.state` && e.data.to === 'succeeded')).toHaveLength(1)
    expect(await leaderPid(url)).toBeDefined()
  }, 600_000)
})
