import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { TestMesh } from '../helpers/mesh.ts'
import { freePort } from '../../cli/index.ts'

const MiB = 1024 * 1024
const METRICS_TOKEN = 'metrics-token-0123456789abcdef'

/** The value of one sample line, e.g. `staccato_transfers{state="queued"} 3`; undefined when the series is absent. */
function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(l => [l[1], l[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3])
  }
  return undefined
}

describe('Prometheus metrics (real coordinator and agents)', () => {
  let mesh: TestMesh
  let metricsPort: number

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator(['--metrics-token', METRICS_TOKEN])
    await mesh.startAgent('store-1')
    metricsPort = await freePort()
    // Syncing every MiB gives an 8 MiB copy several journal writes.
    await mesh.startAgent('compute-1', ['--metrics-port', String(metricsPort), '--sync-every', '1MiB'])
    await writeFile(join(mesh.volume('store-1'), 'm.bin'), randomBytes(8 * MiB))
  })
  afterAll(async () => { await mesh?.stop() })

  async function coordinatorMetrics (): Promise<string> {
    const res = await fetch(`${mesh.ready.apiUrl}/metrics`, { headers: { authorization: `Bearer ${mesh.ready.apiToken}` } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
    return await res.text()
  }

  it('asks the coordinator\'s /metrics for a token and lists it in the OpenAPI document', async () => {
    expect((await fetch(`${mesh.ready.apiUrl}/metrics`)).status).toBe(401)
    const doc = await (await fetch(`${mesh.ready.apiUrl}/openapi.json`)).json() as { paths: Record<string, unknown> }
    expect(Object.keys(doc.paths)).toContain('/metrics')
  })

  it('shows /metrics, counted over all tenants, only to the metrics token and all-tenants admins', async () => {
    const scrape = async (token: string): Promise<number> => (await fetch(`${mesh.ready.apiUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status
    const mint = async (role: string, tenant: string): Promise<string> => {
      const res = await mesh.api('POST', '/v1/tokens', { role, tenant })
      expect(res.status, JSON.stringify(res.body)).toBe(201)
      return (res.body as { token: string }).token
    }
    expect(await scrape(METRICS_TOKEN)).toBe(200)
    expect(await scrape(mesh.ready.apiToken)).toBe(200)
    expect(await scrape(await mint('reader', 'team-a'))).toBe(403)
    expect(await scrape(await mint('admin', 'team-a'))).toBe(403)
    expect(await scrape('not-the-metrics-token')).toBe(401)
    // The metrics token is good for nothing else.
    const other = await fetch(`${mesh.ready.apiUrl}/v1/transfers`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
    expect(other.status).toBe(401)
  })

  it('moves the coordinator\'s series when transfers run and fail', async () => {
    const before = await coordinatorMetrics()
    for (const series of ['staccato_transfers', 'staccato_transfers_started_total', 'staccato_transfers_finished_total',
      'staccato_scheduling_pass_seconds_count', 'staccato_api_request_duration_seconds_count', 'staccato_agents']) {
      expect(before, series).toMatch(new RegExp(`^${series}(\\{| )`, 'm'))
    }
    const startedBefore = sample(before, 'staccato_transfers_started_total') ?? 0
    const succeededBefore = sample(before, 'staccato_transfers_finished_total', { state: 'succeeded' }) ?? 0
    const passesBefore = sample(before, 'staccato_scheduling_pass_seconds_count') ?? 0
    expect(sample(before, 'staccato_agents', { online: 'true' })).toBe(2)

    const ok = await mesh.submit('agent://store-1/vol/m.bin', 'agent://compute-1/vol/m.bin')
    const bad = await mesh.submit('agent://store-1/vol/absent.bin', 'agent://compute-1/vol/absent.bin')
    expect((await mesh.waitForState(ok.id, ['succeeded', 'failed'])).state).toBe('succeeded')
    expect((await mesh.waitForState(bad.id, ['succeeded', 'failed'])).state).toBe('failed')

    const after = await coordinatorMetrics()
    expect(sample(after, 'staccato_transfers_started_total')).toBeGreaterThanOrEqual(startedBefore + 1)
    expect(sample(after, 'staccato_transfers_finished_total', { state: 'succeeded' })).toBe(succeededBefore + 1)
    expect(sample(after, 'staccato_transfers_failed_total', { code: 'not_found', class: 'fatal' })).toBeGreaterThanOrEqual(1)
    expect(sample(after, 'staccato_transfers', { state: 'succeeded' })).toBeGreaterThanOrEqual(1)
    expect(sample(after, 'staccato_transfers', { state: 'failed' })).toBeGreaterThanOrEqual(1)
    expect(sample(after, 'staccato_scheduling_pass_seconds_count')).toBeGreaterThan(passesBefore)
    expect(sample(after, 'staccato_scheduling_wait_seconds_count')).toBeGreaterThanOrEqual(2)
    // The two submissions are in the API histogram under their route pattern.
    expect(sample(after, 'staccato_api_request_duration_seconds_count', { method: 'POST', route: '/v1/transfers', status_code: '201' })).toBeGreaterThanOrEqual(2)
  })

  it('counts an agent\'s bytes by direction and protocol, its journal writes and active transfers', async () => {
    const dest = `http://127.0.0.1:${metricsPort}/metrics`
    const read = async (url: string): Promise<string> => {
      const res = await fetch(url)
      expect(res.status).toBe(200)
      return await res.text()
    }
    const before = await read(dest)
    const inBefore = sample(before, 'staccato_agent_bytes_total', { direction: 'in', protocol: 'agent' }) ?? 0
    const t = await mesh.submit('agent://store-1/vol/m.bin', 'agent://compute-1/vol/m2.bin')
    expect((await mesh.waitForState(t.id, ['succeeded', 'failed'])).state).toBe('succeeded')

    const after = await read(dest)
    expect(sample(after, 'staccato_agent_bytes_total', { direction: 'in', protocol: 'agent', agent: 'compute-1' })).toBe(inBefore + 8 * MiB)
    expect(sample(after, 'staccato_agent_bytes_total', { direction: 'out', protocol: 'file' })).toBeGreaterThanOrEqual(8 * MiB)
    expect(sample(after, 'staccato_agent_journal_writes_total')).toBeGreaterThanOrEqual(1)
    // The agent finishes its bookkeeping (journal, running set) just after the coordinator recorded the success.
    await mesh.until(async () => sample(await read(dest), 'staccato_agent_active_transfers') === 0, 10_000, 'the agent to count no active transfer')
    expect(sample(after, 'staccato_agent_transfers_total', { outcome: 'succeeded' })).toBeGreaterThanOrEqual(1)
    expect(after).toMatch(/^staccato_agent_throughput_bytes_per_second\{direction="in"/m)
    expect(after).toMatch(/^staccato_agent_swarm_pieces_served_total/m)

    // The source agent serves the same series on its status port; the bytes it sent count as out over agent.
    const source = mesh.agents.get('store-1')?.info.statusUrl.replace(/\/status$/, '/metrics') as string
    expect(sample(await read(source), 'staccato_agent_bytes_total', { direction: 'out', protocol: 'agent', agent: 'store-1' })).toBeGreaterThanOrEqual(16 * MiB)
  })
})
