import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { sha256File } from '../helpers/mesh.ts'
import { spawnStaccato, stopProcess, waitForJson } from '../../cli/index.ts'
import { startReplica as startReplicaIn, until } from './replicas.ts'
import type { Change, Replica } from './replicas.ts'
import { PgTransferStore } from '../../coordinator/store-pg.ts'
import { leaseHolderPid as leaderPid } from '../../coordinator/index.ts'
import { postgresMissing, startPostgres } from '../helpers/postgres.ts'
import { Receiver } from '../events/helpers.ts'
import type { Postgres } from '../helpers/postgres.ts'

const missing = postgresMissing()
// CI installs postgresql (.ci/run): there a missing server is a failure, not a skip.
if (missing !== undefined && process.env.CI === 'true') throw new Error(missing)


const TOKEN = `stc_${randomBytes(24).toString('base64url')}`
const JOIN = `stj_${randomBytes(24).toString('base64url')}`
// Enrolled, never connected: submits naming them are accepted and stay queued, and the leader's dispatcher marks them waiting.
const AGENTS = ['src-1', 'dst-1']
const BODY = JSON.stringify({ source: 'agent://src-1/vol/in.bin', destination: 'agent://dst-1/vol/out.bin' })

describe.skipIf(missing !== undefined)(missing === undefined ? 'coordinator replicas on one PostgreSQL' : `coordinator replicas on one PostgreSQL (skipped: ${missing})`, () => {
  let server: Postgres
  let base: string
  const replicas: Replica[] = []
  const agents: ChildProcess[] = []
  beforeAll(async () => {
    server = await startPostgres()
    base = await mkdtemp(join(tmpdir(), 'staccato-failover-'))
  }, 120_000)
  afterAll(async () => {
    await Promise.all([...agents, ...replicas.map(r => r.child)].map(async child => { await stopProcess(child) }))
    await server?.stop()
    if (base !== undefined) await rm(base, { recursive: true, force: true })
  })

  async function startReplica (url: string, n: number): Promise<Replica> {
    const replica = await startReplicaIn(base, url, n, {
      token: TOKEN,
      join: JOIN,
      // A short claim: the dead leader's webhook deliveries are taken over within seconds (the attempt timeout stays below it).
      extra: ['--webhook-allow', 'loopback', '--webhook-timeout', '1000', '--webhook-claim', '3000', '--webhook-interval', '100']
    })
    replicas.push(replica)
    return replica
  }

  async function api (r: Replica, method: string, path: string, body?: string): Promise<{ status: number, body: unknown }> {
    const res = await fetch(`${r.ready.apiUrl}${path}`, { method, body, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } })
    return { status: res.status, body: await res.json() }
  }

  async function feed (r: Replica): Promise<Change[]> {
    const items: Change[] = []
    for (let after = 0, pages = 0; pages < 100; pages++) {
      const page = (await api(r, 'GET', `/v1/changes?after=${after}&limit=1000`)).body as { items: Change[] }
      items.push(...page.items)
      if (page.items.length < 1000) break
      after = page.items[page.items.length - 1].seq
    }
    return items
  }

  async function waitingOn (r: Replica, id: string): Promise<true | undefined> {
    const rec = (await api(r, 'GET', `/v1/transfers/${id}`)).body as { waiting?: { reason: string } }
    return rec.waiting?.reason === 'agent_offline' ? true : undefined
  }

  it('SIGKILL of the leader: another replica takes over scheduling, every acknowledged submit is kept, and the feed has each event once, in order, on every replica', async () => {
    const url = await server.freshDatabase()
    const seed = await PgTransferStore.open(url)
    const now = new Date().toISOString()
    for (const name of AGENTS) await seed.putAgent({ name, peerId: `12D3KooW${name}`, addrs: [], volumes: [{ name: 'vol', readOnly: false }], plugins: ['agent'], version: 'test', online: false, enrolledAt: now, lastSeenAt: now })
    await seed.close()
    for (let n = 0; n < 3; n++) await startReplica(url, n)

    const acknowledged: string[] = []
    const submit = async (r: Replica): Promise<string> => {
      const res = await api(r, 'POST', '/v1/transfers', BODY)
      expect(res.status).toBe(201)
      const id = (res.body as { id: string }).id
      acknowledged.push(id)
      return id
    }
    for (let i = 0; i < 30; i++) await submit(replicas[i % 3])
    // The leader's dispatcher looks at transfers submitted to every replica.
    await until('the leader to mark every submit waiting', async () => (await Promise.all(acknowledged.map(async id => await waitingOn(replicas[0], id)))).every(Boolean) ? true : undefined)

    const failovers: number[] = []
    for (let round = 0; round < 2; round++) {
      const pid = await until('a leader', async () => await leaderPid(url))
      const leader = replicas.find(r => r.child.pid === pid) as Replica
      expect(leader).toBeDefined()
      const killed = performance.now()
      leader.child.kill('SIGKILL')
      replicas.splice(replicas.indexOf(leader), 1)
      // Submits go on at the survivors while the lease moves; the first one after the kill times the failover.
      const probe = await submit(replicas[0])
      for (let i = 0; i < 10; i++) await submit(replicas[i % replicas.length])
      await until('the new leader to schedule a submit made after the kill', async () => await waitingOn(replicas[1], probe))
      failovers.push(performance.now() - killed)
      const next = await until('a new leader', async () => await leaderPid(url))
      expect(replicas.map(r => r.child.pid)).toContain(next)
      // Back to three for the next round.
      replicas.push(await startReplica(url, 3 + round))
    }
    process.stderr.write(`failover (leader SIGKILL -> a submit made after it is scheduled): ${failovers.map(ms => `${(ms / 1000).toFixed(1)} s`).join(', ')}\n`)

    // Every acknowledged transfer, on every replica, each with its events once and in seq order.
    await until('every replica to have every acknowledged transfer', async () => {
      for (const r of replicas) for (const id of acknowledged) if ((await api(r, 'GET', `/v1/transfers/${id}`)).status !== 200) return undefined
      return true
    })
    const feeds = await Promise.all(replicas.map(feed))
    for (const f of feeds) expect(f).toEqual(feeds[0])
    const seqs = feeds[0].map(e => e.seq)
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1])
    expect(new Set(feeds[0].map(e => e.id)).size).toBe(feeds[0].length)
    for (const id of acknowledged) {
      expect(feeds[0].filter(e => e.topic === `transfer.${id}.state` && e.data.to === 'queued')).toHaveLength(1)
    }
  }, 600_000)

  it('with agents as processes: the leader SIGKILLed while a transfer is mid-copy, the agents move to the new leader, every acknowledged transfer completes once, and a webhook gets each terminal event', async () => {
    await Promise.all(replicas.splice(0).map(async r => { await stopProcess(r.child) }))
    const url = await server.freshDatabase()
    for (let n = 10; n < 13; n++) await startReplica(url, n)
    const receiver = await Receiver.start()
    const hook = await api(replicas[1], 'POST', '/v1/webhooks', JSON.stringify({ url: receiver.url, topics: ['transfer.*.state'] }))
    expect(hook.status).toBe(201)
    receiver.secret = (hook.body as { secret: string }).secret
    await until('every replica to know the webhook', async () => {
      for (const r of replicas) if ((await api(r, 'GET', `/v1/webhooks/${(hook.body as { id: string }).id}`)).status !== 200) return undefined
      return true
    })
    const list = replicas.map(r => r.ready.multiaddrs[0]).join(',')
    const volume = (name: string): string => join(base, 'volumes', name)
    for (const name of ['src-a', 'dst-a']) {
      await mkdir(volume(name), { recursive: true })
      const readyFile = join(base, `${name}-ready.json`)
      const child = spawnStaccato([
        'agent', '--name', name, '--coordinator', list, '--join-token', JOIN, '--data-dir', join(base, 'agents', name),
        '--volume', `vol=${volume(name)}`, '--listen', '/ip4/127.0.0.1/tcp/0', '--ready-file', readyFile,
        // Throttled (8 MB files at 4 MiB/s): a transfer is truly copying when the leader dies.
        ...(name === 'src-a' ? ['--max-upload-rate', '4MiB'] : [])
      ], join(base, `${name}.log`))
      agents.push(child)
      await waitForJson(readyFile, child, 120_000, `agent ${name}`)
    }
    await until('both agents online', async () => {
      for (const name of ['src-a', 'dst-a']) if (((await api(replicas[0], 'GET', `/v1/agents/${name}`)).body as { online?: boolean }).online !== true) return undefined
      return true
    })
    const files = Array.from({ length: 6 }, (_, i) => `f${i}.bin`)
    for (const f of files) await writeFile(join(volume('src-a'), f), randomBytes(8 * 1024 * 1024))
    const ids: string[] = []
    for (const [i, f] of files.entries()) {
      const res = await api(replicas[i % 3], 'POST', '/v1/transfers', JSON.stringify({ source: `agent://src-a/vol/${f}`, destination: `agent://dst-a/vol/${f}` }))
      expect(res.status).toBe(201)
      ids.push((res.body as { id: string }).id)
    }
    const state = async (r: Replica, id: string): Promise<string> => ((await api(r, 'GET', `/v1/transfers/${id}`)).body as { state: string }).state
    // Killed while bytes are moving: the copy on the agents must outlive the leader.
    const copying = async (id: string): Promise<boolean> => {
      const rec = (await api(replicas[0], 'GET', `/v1/transfers/${id}`)).body as { state: string, progress?: { bytesDone: number } }
      return rec.state === 'active' && (rec.progress?.bytesDone ?? 0) > 0
    }
    const inFlight = await until('a transfer mid-copy', async () => {
      for (const id of ids) if (await copying(id)) return id
      return undefined
    })
    const pid = await until('a leader', async () => await leaderPid(url))
    const leader = replicas.find(r => r.child.pid === pid) as Replica
    expect(leader).toBeDefined()
    leader.child.kill('SIGKILL')
    replicas.splice(replicas.indexOf(leader), 1)
    // Submitted after the kill: only a new leader with the agents registered to it can run these.
    for (const f of files.slice(0, 2)) {
      const res = await api(replicas[0], 'POST', '/v1/transfers', JSON.stringify({ source: `agent://src-a/vol/${f}`, destination: `agent://dst-a/vol/after-${f}` }))
      expect(res.status).toBe(201)
      ids.push((res.body as { id: string }).id)
    }
    await until('every acknowledged transfer to finish', async () => (await Promise.all(ids.map(async id => await state(replicas[0], id)))).every(s => s === 'succeeded' || s === 'failed') ? true : undefined, 3000)
    for (const id of ids) expect(await state(replicas[0], id)).toBe('succeeded')
    for (const f of files) expect(await sha256File(join(volume('dst-a'), f))).toBe(await sha256File(join(volume('src-a'), f)))
    await until('both survivors to have every event', async () => {
      const [a, b] = await Promise.all(replicas.map(feed))
      return a.length === b.length ? true : undefined
    })
    const [a, b] = await Promise.all(replicas.map(feed))
    expect(b).toEqual(a)
    expect(new Set(a.map(e => e.id)).size).toBe(a.length)
    for (const id of ids) expect(a.filter(e => e.topic === `transfer.${id}.state` && e.data.to === 'succeeded')).toHaveLength(1)
    // The transfer copying at the kill: one attempt's events, each once (no second start by the new leader unless the first failed).
    const killedEvents = a.filter(e => e.topic === `transfer.${inFlight}.state`)
    expect(new Set(killedEvents.map(e => e.id)).size).toBe(killedEvents.length)
    expect(killedEvents.filter(e => e.data.to === 'active')).toHaveLength(1)
    // The webhook gets every terminal event, the in-flight transfer's included, whichever replica wrote it.
    const terminal = a.filter(e => e.topic.endsWith('.state') && e.data.to === 'succeeded')
    try {
      await receiver.until(d => terminal.every(e => d.some(x => x.id === e.id && x.status === 204)), 'a delivery of every terminal event', 60_000)
      expect(receiver.deliveries.every(d => d.verified)).toBe(true)
    } finally {
      await receiver.close()
    }
  }, 600_000)
})
