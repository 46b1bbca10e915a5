/**
 * node scripts/bench-api-probe.ts [--duration 8 --replicas 3,1 --sample 5 --pgopts name=value,…]
 * (through the bench lock: flock /work/bench.lock …)
 *
 * Where a durable submit waits with 1 and with N coordinators on one
 * PostgreSQL (issue #17), side by side in one run, each phase on a fresh
 * database of one private cluster (fsync on), 64 connections split evenly:
 * submits/s and the slowest coordinator's p50/p99 (as bench:api), each
 * coordinator's p99 (the leader's marked); CPU-seconds
 * per 1,000 submits of PostgreSQL (every process of its user), of the
 * coordinators and of this client; commits, WAL syncs and bytes
 * (pg_stat_database, pg_stat_wal); and every `--sample` ms the state and
 * wait event of each client backend (pg_stat_activity), printed as the mean
 * number of backends in each (state, wait event, statement) per sample.
 * `--pgopts` sets server options first (ALTER SYSTEM), e.g. commit_delay=100;
 * PROF=<dir> makes each coordinator write a CPU profile (.cpuprofile) there;
 * PROBE_NODE_OPTIONS adds node options to the coordinators'.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, readFile } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import pg from 'pg'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { leaseHolderPid, openStore } from '../coordinator/index.ts'
import { freePort, spawnStaccato, startPostgres, stopProcess, waitForJson } from '../cli/index.ts'
import type { ReadyInfo } from '../cli/index.ts'
import { cpuSeconds } from './bench-util.ts'

const { values: a } = parseArgs({ options: { duration: { type: 'string', default: '8' }, replicas: { type: 'string', default: '1,3' }, pgopts: { type: 'string', default: '' }, sample: { type: 'string', default: '5' } } })
const duration = Number(a.duration)
const TOKEN = `stc_bench${randomBytes(24).toString('base64url')}`
const BODY = JSON.stringify({ source: 'agent://bench-src/vol/in.bin', destination: 'agent://bench-dst/vol/out.bin' })

async function seed (url: string): Promise<void> {
  const store = await openStore({ kind: 'postgres', url })
  for (const name of ['bench-src', 'bench-dst']) {
    const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const now = new Date().toISOString()
    await store.putAgent({ name, peerId, addrs: [], volumes: [{ name: 'vol', readOnly: false }], plugins: ['agent'], version: 'bench', online: false, enrolledAt: now, lastSeenAt: now })
  }
  await store.close()
}

/** PROF=<dir>: a CPU profile per coordinator; PROBE_NODE_OPTIONS: more options (e.g. `--import` of a query counter). */
function nodeOptions (): Record<string, string> {
  const o = [process.env.PROF !== undefined ? `--cpu-prof --cpu-prof-dir=${process.env.PROF}` : '', process.env.PROBE_NODE_OPTIONS ?? ''].filter(Boolean).join(' ')
  return o === '' ? {} : { NODE_OPTIONS: o }
}

async function start (dir: string, url: string) {
  await mkdir(dir, { recursive: true })
  const readyFile = join(dir, 'ready.json')
  const child = spawnStaccato(['coordinator', '--data-dir', dir, '--store', url, '--api-port', String(await freePort()), '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--ready-file', readyFile, '--log-level', 'warn', '--api-token', TOKEN, '--rate-limit', '1000000000', '--max-connections-per-address', '0'], join(dir, 'coordinator.log'), nodeOptions())
  const ready = await waitForJson<ReadyInfo>(readyFile, child, 60_000, 'coordinator')
  return { ready, pid: child.pid as number, child, dir }
}

function pgPids (): number[] {
  return execFileSync('pgrep', ['-u', 'postgres'], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
}
/** A backend may have ended since it was listed: it counts for nothing. */
function cpuOf (pids: number[]): number { let s = 0; for (const p of pids) { try { s += cpuSeconds(p) } catch { s += 0 } } return s }

async function phase (n: number, server: Awaited<ReturnType<typeof startPostgres>>, base: string): Promise<void> {
  const url = await server.freshDatabase()
  await seed(url)
  const cs = []
  for (let i = 0; i < n; i++) cs.push(await start(join(base, `r${n}-${i}`), url))
  const probe = new pg.Client({ connectionString: url }); await probe.connect()
  const waits = new Map<string, number>(); let samples = 0
  const stat = async () => (await probe.query("SELECT (SELECT row_to_json(w) FROM pg_stat_wal w) AS wal, (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) AS commits")).rows[0]
  const s0 = await stat()
  const pgs = pgPids()
  const c0 = { pg: cpuOf(pgs), co: cs.map(c => cpuSeconds(c.pid)), me: process.cpuUsage() }
  let running = true
  const sampler = (async () => {
    while (running) {
      const rows = (await probe.query("SELECT state, coalesce(wait_event_type,'-') || ':' || coalesce(wait_event,'-') AS w, left(query, 30) AS q FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'")).rows
      samples++
      for (const r of rows) { if (r.state === 'idle' && r.w.startsWith('Client')) continue; const k = `${r.state} ${r.w} ${r.state === 'idle in transaction' ? '' : r.q}`; waits.set(k, (waits.get(k) ?? 0) + 1) }
      await new Promise(r => setTimeout(r, Number(a.sample)))
    }
  })()
  const each = Math.round(64 / n)
  const t0 = Date.now()
  const leader = n > 1 ? await leaseHolderPid(url) : undefined
  const results = await Promise.all(cs.map(async c => await autocannon({ url: `${c.ready.apiUrl}/v1/transfers`, method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: BODY, connections: each, duration })))
  const wall = (Date.now() - t0) / 1000
  running = false; await sampler
  const me = process.cpuUsage(c0.me)
  const pgCpu = cpuOf(pgs) - c0.pg
  const coCpu = cs.map((c, i) => cpuSeconds(c.pid) - c0.co[i])
  const s1 = await stat()
  await probe.end()
  const ok = results.reduce((s, r) => s + r['2xx'], 0)
  const perSec = ok / wall
  console.log(`\n=== ${n} replicas: ${Math.round(perSec)}/s ok=${ok} p50=${Math.max(...results.map(r => r.latency.p50))} p99=${Math.max(...results.map(r => r.latency.p99))} wall=${wall.toFixed(1)}s load=${(await readFile('/proc/loadavg', 'utf8')).trim()}`)
  // Each coordinator's own tail: the leader also schedules and marks the queue (bench:api prints the slowest).
  if (n > 1) console.log(`p99 per coordinator: ${cs.map((c, i) => `${results[i].latency.p99} ms${c.pid === leader ? ' (leader)' : ''}`).join(', ')}`)
  const per1k = (x: number) => (x / ok * 1000).toFixed(3)
  console.log(`CPU s/1000 submits: pg ${per1k(pgCpu)}  coordinators ${per1k(coCpu.reduce((s, x) => s + x, 0))} (${coCpu.map(x => x.toFixed(1)).join(' + ')} s)  client ${per1k((me.user + me.system) / 1e6)}; total CPU ${(pgCpu + coCpu.reduce((s, x) => s + x, 0) + (me.user + me.system) / 1e6).toFixed(1)} s over ${wall.toFixed(1)} s`)
  const commits = Number(s1.commits) - Number(s0.commits)
  console.log(`commits ${commits} (${(commits / wall).toFixed(0)}/s, ${(ok / commits).toFixed(1)} submits/commit)  wal_sync ${s1.wal.wal_sync - s0.wal.wal_sync} wal_write ${s1.wal.wal_write - s0.wal.wal_write} wal_bytes/submit ${((s1.wal.wal_bytes - s0.wal.wal_bytes) / ok).toFixed(0)}`)
  const top = [...waits].sort((x, y) => y[1] - x[1]).slice(0, 14)
  console.log(`wait samples (${samples} samples; mean busy backends per sample):`)
  for (const [k, v] of top) console.log(`  ${(v / samples).toFixed(2)}  ${k}`)
  for (const c of cs) await stopProcess(c.child)
}

const base = await mkdtemp(join(tmpdir(), 'staccato-replicas-probe-'))
const server = await startPostgres({ durable: true })
try {
  if (a.pgopts !== '') { const c = new pg.Client({ connectionString: server.url }); await c.connect(); for (const s of a.pgopts.split(',')) { const [k, v] = s.split('='); await c.query(`ALTER SYSTEM SET ${k} = '${v}'`) } await c.query('SELECT pg_reload_conf()'); await c.end() }
  for (const n of a.replicas.split(',').map(Number)) await phase(n, server, base)
} finally {
  await server.stop()
  await rm(base, { recursive: true, force: true })
}
