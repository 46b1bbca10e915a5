/**
 * npm run bench:api [-- --duration 10 --connections 64 --queued 100000 --store leveldb|postgres --only submits --json]
 *
 * The coordinator alone, as a process with its embedded store, on loopback:
 * durable POST /v1/transfers per second from 64 concurrent clients, GET
 * /v1/transfers/:id per second, then with --queued transfers waiting: one
 * scheduling pass (fifo over the whole queue), the coordinator's RSS, and
 * the latency of a page of GET /v1/transfers?state=queued.
 *
 * `--store postgres` measures LevelDB, then the same on a private PostgreSQL
 * cluster (Debian's server binaries, fsync on, started and deleted here) with
 * one coordinator, then submits to 3 coordinators on that database, the
 * clients split among them round-robin, in one run. With PostgreSQL, the
 * server's CPU (postmaster and backends) per 1,000 submits is reported too.
 * `--only submits` (with `--store postgres`): the two PostgreSQL submit
 * phases alone (1 coordinator, then 3), the same measurements, for A/B runs
 * of `replicasOverOne` in a fraction of the time.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import type { Result } from 'autocannon'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { fifo, leaseHolderPid, openStore, schedulerView } from '../coordinator/index.ts'
import type { StoreSpec } from '../coordinator/index.ts'
import { freePort, spawnStaccato, startPostgres, stopProcess, waitForJson } from '../cli/index.ts'
import type { ReadyInfo } from '../cli/index.ts'
import { cpuSeconds, median, note, percentile, processTreeCpu, report, round, rssMiB } from './bench-util.ts'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    queued: { type: 'string', default: '100000' },
    json: { type: 'boolean', default: false },
    store: { type: 'string', default: 'leveldb' },
    profile: { type: 'string' },
    only: { type: 'string' }
  }
})
const duration = Number(args.duration)
const connections = Number(args.connections)
const queued = Number(args.queued)
if (args.store !== 'leveldb' && args.store !== 'postgres') throw new Error('--store: leveldb or postgres')
if (args.only !== undefined && (args.only !== 'submits' || args.store !== 'postgres')) throw new Error('--only: submits, with --store postgres')
const submitsOnly = args.only === 'submits'

const BENCH_TOKEN = `stc_bench${randomBytes(24).toString('base64url')}`
const SOURCE_AGENT = 'bench-src'
const DEST_AGENT = 'bench-dst'
const BODY = JSON.stringify({ source: `agent://${SOURCE_AGENT}/vol/in.bin`, destination: `agent://${DEST_AGENT}/vol/out.bin` })

/**
 * Enrolls two agents that never connect: submissions naming them are valid
 * (the API refuses unknown agents) and stay queued, so that only the API and
 * the store are measured.
 */
async function seedAgents (spec: StoreSpec): Promise<void> {
  const store = await openStore(spec)
  try {
    for (const name of [SOURCE_AGENT, DEST_AGENT]) {
      const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
      const now = new Date().toISOString()
      await store.putAgent({ name, peerId, addrs: [], volumes: [{ name: 'vol', readOnly: false }], plugins: ['agent'], version: 'bench', online: false, enrolledAt: now, lastSeenAt: now })
    }
  } finally {
    await store.close()
  }
}

interface Running { ready: ReadyInfo, pid: number, stop: () => Promise<void>, kill: () => void }

async function startCoordinator (dataDir: string, spec: StoreSpec): Promise<Running> {
  await mkdir(dataDir, { recursive: true })
  const readyFile = join(dataDir, `ready-${Date.now()}.json`)
  const child = spawnStaccato([
    'coordinator', '--data-dir', dataDir, '--store', spec.kind === 'leveldb' ? `leveldb:${spec.dir}` : spec.url, '--api-port', String(await freePort()), '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`,
    '--ready-file', readyFile, '--log-level', 'warn',
    // Replicas share their tokens' database: each would otherwise find another's generated bootstrap token there and refuse its own.
    '--api-token', BENCH_TOKEN,
    // The default per-token limit is meant for people, not for a load generator.
    '--rate-limit', '1000000000',
    // The load generator is one address standing for many clients: --connections may exceed the per-address cap.
    '--max-connections-per-address', '0'
  ], join(dataDir, 'coordinator.log'), args.profile !== undefined ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${args.profile}` } : {})
  const ready = await waitForJson<ReadyInfo>(readyFile, child, 60_000, 'coordinator')
  return { ready, pid: child.pid as number, stop: async () => { await stopProcess(child) }, kill: () => { child.kill('SIGKILL') } }
}

function headers (ready: ReadyInfo): Record<string, string> {
  return { authorization: `Bearer ${ready.apiToken}`, 'content-type': 'application/json' }
}

async function load (opts: autocannon.Options): Promise<Result> {
  return await autocannon({ connections, duration, ...opts })
}

function summary (r: Result): { perSec: number, p50Ms: number, p99Ms: number, ok: number, failed: number } {
  return { perSec: r['2xx'] / (r.duration || duration), p50Ms: r.latency.p50, p99Ms: r.latency.p99, ok: r['2xx'], failed: r.non2xx + r.errors + r.timeouts }
}

async function fillQueue (spec: StoreSpec): Promise<{ created: number, perSec: number }> {
  const store = await openStore(spec)
  try {
    const input = JSON.parse(BODY) as { source: string, destination: string }
    const missing = Math.max(0, queued - store.countInState('queued'))
    const start = performance.now()
    let next = 0
    // Many creates in flight at once, as many API clients would have them.
    const worker = async (): Promise<void> => {
      while (next < missing) {
        next++
        await store.create(input, { tenant: 'default' })
      }
    }
    await Promise.all(Array.from({ length: 256 }, worker))
    return { created: missing, perSec: missing / ((performance.now() - start) / 1000) }
  } finally {
    await store.close()
  }
}

async function schedulePass (spec: StoreSpec): Promise<{ ms: number, queued: number, decisions: number }> {
  const store = await openStore(spec)
  try {
    const scheduler = fifo()
    const times: number[] = []
    let decisions = 0
    // The agents are offline, so a pass looks at every queued transfer: the worst case.
    for (let i = 0; i < 7; i++) {
      const start = performance.now()
      decisions = scheduler.decide(schedulerView(store)).length
      times.push(performance.now() - start)
    }
    return { ms: median(times), queued: store.countInState('queued'), decisions }
  } finally {
    await store.close()
  }
}

async function pageLatency (ready: ReadyInfo): Promise<{ p50Ms: number, p99Ms: number }> {
  const times: number[] = []
  let after: string | undefined
  for (let i = 0; i < 200; i++) {
    const start = performance.now()
    const res = await fetch(`${ready.apiUrl}/v1/transfers?state=queued&limit=100${after !== undefined ? `&after=${after}` : ''}`, { headers: headers(ready) })
    const page = await res.json() as { items: Array<{ id: string }>, next?: string }
    times.push(performance.now() - start)
    if (res.status !== 200) throw new Error(`list answered ${res.status}`)
    // Walk into the queue, back to the start at its end: pages from anywhere in it.
    after = page.next
  }
  times.sort((a, b) => a - b)
  return { p50Ms: percentile(times, 50), p99Ms: percentile(times, 99) }
}

/** Submits to several coordinators at once, the connections split evenly among them. */
async function postToAll (cs: Running[]): Promise<{ perSec: number, p50Ms: number, p99Ms: number, ok: number, failed: number }> {
  const each = Math.max(1, Math.round(connections / cs.length))
  const results = await Promise.all(cs.map(async c => await load({ url: `${c.ready.apiUrl}/v1/transfers`, method: 'POST', headers: headers(c.ready), body: BODY, connections: each })))
  // Latency percentiles of the slowest replica: the figure a round-robin client would see at worst.
  return {
    perSec: results.reduce((n, r) => n + summary(r).perSec, 0),
    p50Ms: Math.max(...results.map(r => r.latency.p50)),
    p99Ms: Math.max(...results.map(r => r.latency.p99)),
    ok: results.reduce((n, r) => n + r['2xx'], 0),
    failed: results.reduce((n, r) => n + summary(r).failed, 0)
  }
}

type Figures = Record<string, number>

/**
 * Leader SIGKILL → the next transfer scheduled: the leader (found through
 * the lease's lock) is killed, one transfer is submitted to a survivor, and
 * the clock stops when a leader's dispatcher has looked at it (its agents
 * are offline, so it is marked waiting). Polled every 20 ms, bounded to 60 s.
 * The killed process leaves `cs` (its stop() is then a no-op).
 *
 * First, a probe submitted before the kill must be marked waiting: the
 * leader marks the queue in order, 500 records a second (waiting.ts), so
 * after the submit phase's tens of thousands the mark of a new transfer
 * measured the backlog (32 s in one run), not the failover.
 */
async function failover (cs: Running[], url: string): Promise<number> {
  const probe = await submitTo(cs[0])
  await waitUntilWaiting(cs[0], probe, 300_000)
  const pid = await leaseHolderPid(url)
  const leader = cs.find(c => c.pid === pid)
  if (leader === undefined) throw new Error('no replica holds the leader lease')
  const killed = performance.now()
  leader.kill()
  const survivor = cs.find(c => c !== leader) as Running
  const id = await submitTo(survivor)
  await waitUntilWaiting(survivor, id, 60_000)
  const seconds = (performance.now() - killed) / 1000
  note(`failover: leader SIGKILL -> next transfer scheduled in ${round(seconds, 2)} s`)
  return seconds
}

async function submitTo (c: Running): Promise<string> {
  const res = await fetch(`${c.ready.apiUrl}/v1/transfers`, { method: 'POST', headers: headers(c.ready), body: BODY })
  if (res.status !== 201) throw new Error(`submit to ${c.ready.apiUrl}: ${res.status}`)
  return (await res.json() as { id: string }).id
}

/** Polls (every 20 ms) until a leader's dispatcher has marked the transfer waiting for its offline agents. */
async function waitUntilWaiting (c: Running, id: string, timeoutMs: number): Promise<void> {
  for (const deadline = performance.now() + timeoutMs; performance.now() < deadline;) {
    const rec = await (await fetch(`${c.ready.apiUrl}/v1/transfers/${id}`, { headers: headers(c.ready) })).json() as { waiting?: { reason: string } }
    if (rec.waiting !== undefined) return
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  throw new Error(`no leader looked at ${id} within ${timeoutMs / 1000} s`)
}

async function measure (label: string, dataDir: string, spec: StoreSpec, replicas: number, serverPid?: number): Promise<Figures> {
  note(`${label}: ${connections} connections, ${duration} s per phase, ${queued} queued transfers`)
  await seedAgents(spec)
  let c = await startCoordinator(dataDir, spec)
  const others: Running[] = []
  try {
    for (let i = 1; i < replicas; i++) others.push(await startCoordinator(join(dataDir, `replica-${i}`), spec))
  } catch (err) {
    await Promise.all([c, ...others].map(async r => { await r.stop() }))
    throw err
  }
  // Every coordinator's: with replicas, each also reads and follows the others' writes.
  const cpu0 = [c, ...others].map(r => cpuSeconds(r.pid))
  const server0 = serverPid !== undefined ? processTreeCpu(serverPid) : undefined
  const post = replicas === 1
    ? summary(await load({ url: `${c.ready.apiUrl}/v1/transfers`, method: 'POST', headers: headers(c.ready), body: BODY }))
    : await postToAll([c, ...others])
  const postCpu = [c, ...others].reduce((sum, r, i) => sum + cpuSeconds(r.pid) - cpu0[i], 0)
  // Backends that exited during the phase are missed (the pools keep theirs open): a lower bound.
  const serverCpu = serverPid !== undefined && server0 !== undefined ? [...processTreeCpu(serverPid)].reduce((sum, [pid, s]) => sum + s - (server0.get(pid) ?? 0), 0) : undefined
  const serverFigure: Figures = serverCpu !== undefined ? { serverCpuSecondsPerThousand: round(serverCpu / (post.ok / 1000), 3) } : {}
  note(`POST /v1/transfers${replicas > 1 ? ` to ${replicas} coordinators` : ''}: ${round(post.perSec, 0)}/s, p50 ${post.p50Ms} ms, p99 ${post.p99Ms} ms (${post.failed} failed), coordinator CPU ${round(postCpu, 2)} s${serverCpu !== undefined ? `, PostgreSQL CPU ${round(serverCpu, 2)} s` : ''}`)
  const failoverSeconds = replicas > 1 && spec.kind === 'postgres' ? await failover([c, ...others], spec.url) : undefined
  await Promise.all(others.map(async r => { await r.stop() }))
  const submits = {
    submitPerSec: round(post.perSec, 0),
    submitP50Ms: post.p50Ms,
    submitP99Ms: post.p99Ms,
    submitFailed: post.failed
  }
  if (replicas > 1) {
    await c.stop()
    return { replicas, ...submits, submitCpuSecondsPerThousand: round(postCpu / (post.ok / 1000), 3), ...serverFigure, ...(failoverSeconds !== undefined ? { failoverSeconds: round(failoverSeconds, 2) } : {}) }
  }
  if (submitsOnly) {
    await c.stop()
    return { connections, durationSeconds: duration, ...submits, submitCpuSecondsPerThousand: round(postCpu / (post.ok / 1000), 3), ...serverFigure }
  }

  const ids = ((await (await fetch(`${c.ready.apiUrl}/v1/transfers?limit=1000`, { headers: headers(c.ready) })).json()) as { items: Array<{ id: string }> }).items.map(t => t.id)
  let i = 0
  const get = summary(await load({
    url: c.ready.apiUrl,
    headers: headers(c.ready),
    requests: [{ method: 'GET', setupRequest: req => ({ ...req, path: `/v1/transfers/${ids[i++ % ids.length]}` }) }]
  }))
  note(`GET /v1/transfers/:id: ${round(get.perSec, 0)}/s, p50 ${get.p50Ms} ms, p99 ${get.p99Ms} ms (${get.failed} failed)`)
  await c.stop()

  const fill = await fillQueue(spec)
  note(`queued ${queued} (${fill.created} created in-process at ${round(fill.perSec, 0)}/s)`)
  const pass = await schedulePass(spec)
  note(`scheduling pass over ${pass.queued} queued: ${round(pass.ms, 1)} ms`)

  c = await startCoordinator(dataDir, spec)
  const page = await pageLatency(c.ready)
  const rss = rssMiB(c.pid)
  note(`with ${queued} queued: coordinator RSS ${round(rss, 0)} MiB, list page p50 ${round(page.p50Ms, 1)} ms, p99 ${round(page.p99Ms, 1)} ms`)
  await c.stop()

  return {
    connections,
    durationSeconds: duration,
    ...submits,
    submitCpuSecondsPerThousand: round(postCpu / (post.ok / 1000), 3),
    ...serverFigure,
    getPerSec: round(get.perSec, 0),
    getP50Ms: get.p50Ms,
    getP99Ms: get.p99Ms,
    queued: pass.queued,
    createInProcessPerSec: round(fill.perSec, 0),
    schedulePassMs: round(pass.ms, 2),
    rssAt100kMiB: round(rss, 1),
    listPageP50Ms: round(page.p50Ms, 2),
    listPageP99Ms: round(page.p99Ms, 2)
  }
}

function lines (label: string, result: Figures): string[] {
  if (result.replicas !== undefined) {
    return [
      `${label}: POST /v1/transfers (durable)   ${result.submitPerSec}/s   p50 ${result.submitP50Ms} ms   p99 ${result.submitP99Ms} ms   (${connections} connections over ${result.replicas} coordinators, ${result.submitCpuSecondsPerThousand} coordinator CPU-s per 1,000)`,
      ...(result.failoverSeconds !== undefined ? [`${label}: failover (leader SIGKILL -> next transfer scheduled)   ${result.failoverSeconds} s`] : [])
    ]
  }
  return [
    `${label}: POST /v1/transfers (durable)   ${result.submitPerSec}/s   p50 ${result.submitP50Ms} ms   p99 ${result.submitP99Ms} ms   (${connections} connections)`,
    `${label}: GET /v1/transfers/:id          ${result.getPerSec}/s   p50 ${result.getP50Ms} ms   p99 ${result.getP99Ms} ms`,
    `${label}: scheduling pass, ${result.queued} queued   ${result.schedulePassMs} ms`,
    `${label}: coordinator RSS, ${result.queued} queued   ${result.rssAt100kMiB} MiB`,
    `${label}: GET /v1/transfers?state=queued  p50 ${result.listPageP50Ms} ms   p99 ${result.listPageP99Ms} ms (pages of 100)`
  ]
}

async function main (): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'staccato-bench-api-'))
  try {
    const leveldb = submitsOnly ? undefined : await measure('LevelDB', join(dataDir, 'leveldb'), { kind: 'leveldb', dir: join(dataDir, 'leveldb', 'store') }, 1)
    if (leveldb !== undefined && args.store === 'leveldb') {
      // The shape earlier runs printed: one store, its figures at the top level.
      report(args.json, leveldb, lines('LevelDB', leveldb).map(l => l.slice('LevelDB: '.length)))
      return
    }
    const server = await startPostgres({ durable: true })
    try {
      const serverPid = await server.serverPid()
      const one = await measure('PostgreSQL, 1 coordinator', join(dataDir, 'pg1'), { kind: 'postgres', url: await server.freshDatabase() }, 1, serverPid)
      const three = await measure('PostgreSQL, 3 coordinators', join(dataDir, 'pg3'), { kind: 'postgres', url: await server.freshDatabase() }, 3, serverPid)
      const result = {
        ...(leveldb !== undefined ? { leveldb } : {}),
        postgres: one,
        postgres3: three,
        ...(leveldb !== undefined ? { postgresToLevelDbSubmits: round(one.submitPerSec / leveldb.submitPerSec, 2) } : {}),
        // The #17 target "3 replicas not slower than one": ≥ 1, read with the two p99s beside it.
        replicasOverOne: round(three.submitPerSec / one.submitPerSec, 2),
        failoverSeconds: three.failoverSeconds
      }
      report(args.json, result, [
        ...(leveldb !== undefined ? lines('LevelDB', leveldb) : []),
        ...(submitsOnly ? [] : lines('PostgreSQL', one)),
        ...lines('PostgreSQL', three),
        ...(leveldb !== undefined ? [`PostgreSQL / LevelDB submits: ${round(one.submitPerSec / leveldb.submitPerSec, 2)}`] : []),
        `PostgreSQL 3 coordinators / 1 submits: ${result.replicasOverOne}   (p99 ${three.submitP99Ms} ms with 3, ${one.submitP99Ms} ms with 1)`
      ])
    } finally {
      await server.stop()
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
}

await main()
