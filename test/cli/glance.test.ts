import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { TestMesh } from '../helpers/mesh.ts'
import { BIN } from '../../cli/processes.ts'
import { runCli } from './helpers.ts'

interface Item { id: string, state: string }

describe('the CLI at a glance', () => {
  let mesh: TestMesh
  let home: string
  let env: Record<string, string>
  const ids: string[] = []

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('compute-1'), mesh.startAgent('compute-2'), mesh.startAgent('slow', ['--max-download-rate', '1MiB'])])
    home = await mkdtemp(join(tmpdir(), 'staccato-cli-home-'))
    env = { STACCATO_URL: mesh.ready.apiUrl, STACCATO_TOKEN: mesh.ready.apiToken, XDG_CONFIG_HOME: home }
    await writeFile(join(mesh.volume('store-1'), 'a.bin'), randomBytes(64 * 1024))
    for (const name of ['a.bin', 'b.bin', 'missing.bin']) {
      const t = await mesh.submit(`agent://store-1/vol/${name === 'b.bin' ? 'a.bin' : name}`, `agent://compute-1/vol/${name}`)
      ids.push(t.id)
      await mesh.waitForState(t.id, ['succeeded', 'failed'])
    }
    await mesh.kill('compute-2', 'SIGTERM')
    await mesh.waitForAgent('compute-2', false)
  })
  afterAll(async () => {
    await mesh?.stop()
    if (home !== undefined) await rm(home, { recursive: true, force: true })
  })

  it('lists transfers newest first, a page at a time with --after, and --json keeps next', async () => {
    const first = await runCli(['transfer', 'list', '--limit', '2', '--json'], env)
    expect(first.code).toBe(0)
    const page = JSON.parse(first.stdout) as { items: Item[], next?: string }
    expect(page.items.map(i => i.id)).toEqual([ids[2], ids[1]])
    expect(page.next).toBe(ids[1])
    const rest = JSON.parse((await runCli(['transfer', 'list', '--after', page.next ?? '', '--json'], env)).stdout) as { items: Item[], next?: string }
    expect(rest).toEqual({ items: [expect.objectContaining({ id: ids[0] })] })
    const text = await runCli(['transfer', 'list', '--limit', '1'], env)
    expect(text.stdout).toMatch(new RegExp(`^${ids[2]}\\s`, 'm'))
    expect(text.stdout).toMatch(new RegExp(`^more: --after ${ids[2]}$`, 'm'))
    const oldest = JSON.parse((await runCli(['transfer', 'list', '--oldest-first', '--json'], env)).stdout) as { items: Item[] }
    expect(oldest.items.map(i => i.id)).toEqual(ids)
  })

  it('lists failed transfers with their error', async () => {
    const r = await runCli(['transfer', 'list', '--state', 'failed'], env)
    expect(r.code).toBe(0)
    const [header, line] = r.stdout.split('\n')
    expect(header).toMatch(/\sERROR$/)
    expect(line).toMatch(new RegExp(`^${ids[2]}\\s+failed\\s.*\\snot_found: .*missing\\.bin`))
  })

  it('shows each agent\'s load, free space and when it was last seen (now, while online)', async () => {
    // Free space comes with the heartbeats (a third of the heartbeat timeout apart), and the time of the latest one.
    await mesh.until(async () => {
      const a = (await mesh.api('GET', '/v1/agents/store-1')).body as { volumes: Array<{ free?: number }>, lastSeenAt: string, enrolledAt: string }
      return (a.volumes[0].free ?? 0) > 0 && a.lastSeenAt > a.enrolledAt
    }, 30_000, 'a heartbeat with free space')
    const r = await runCli(['agents'], env)
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines[0]).toMatch(/^NAME\s+ONLINE\s+ACTIVE\s+RATE\s+VERSION\s+VOLUMES\s+LAST SEEN$/)
    expect(lines.find(l => l.startsWith('store-1 '))).toMatch(/^store-1\s+yes\s+0\s+-\s+\S+\s+vol \(\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB) free\)\s+now \(online\)$/)
    expect(lines.find(l => l.startsWith('compute-2 '))).toMatch(/^compute-2\s+no\s+0\s+-\s+\S+\s+vol\s+\d{4}-\d\d-\d\dT\S+Z$/)

    // A copy under way counts at both ends; its rate at the agent that moves the bytes (the destination pulls).
    await writeFile(join(mesh.volume('store-1'), 'big.bin'), randomBytes(32 * 1024 * 1024))
    const t = await mesh.submit('agent://store-1/vol/big.bin', 'agent://slow/vol/big.bin')
    await mesh.until(async () => ((await mesh.transfer(t.id)) as unknown as { progress: { rate: number } }).progress.rate > 0, 60_000, 'the slow copy to report a rate')
    const busy = (await runCli(['agents'], env)).stdout.split('\n')
    await mesh.api('POST', `/v1/transfers/${t.id}/cancel`)
    expect(busy.find(l => l.startsWith('slow '))).toMatch(/^slow\s+yes\s+1\s+\d+(\.\d)? (B|KiB|MiB)\/s\s/)
    expect(busy.find(l => l.startsWith('store-1 '))).toMatch(/^store-1\s+yes\s+1\s+-\s/)
  })

  it('events --since now shows no history; --follow starts from now by default', async () => {
    const now = await runCli(['events', '--since', 'now'], env)
    expect(now.code).toBe(0)
    expect(now.stdout).toBe('')
    const all = await runCli(['events', '--since', '1', '--json'], env)
    const seqs = all.stdout.trim().split('\n').map(l => (JSON.parse(l) as { seq: number }).seq)
    expect(seqs.length).toBeGreaterThan(5)
    const head = Math.max(...seqs)

    const child = spawn(process.execPath, [BIN, 'events', '--follow', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    try {
      // Events keep coming (a new transfer) until the follower has printed one: it may still be starting when the first is made.
      await mesh.until(async () => {
        if (out.includes('\n')) return true
        await mesh.submit('agent://store-1/vol/a.bin', 'agent://compute-1/vol/c.bin', { retries: 0 })
        return false
      }, 60_000, 'the follower to print an event')
    } finally {
      child.kill('SIGINT')
    }
    const first = JSON.parse(out.split('\n')[0]) as { seq: number }
    expect(first.seq).toBeGreaterThan(head)
  })

  it('says in one line that tr_bogus is no transfer id', async () => {
    for (const args of [['transfer', 'show', 'tr_bogus'], ['transfer', 'cancel', 'tr_bogus'], ['transfer', 'list', '--after', 'tr_bogus']]) {
      const r = await runCli(args, env)
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/^staccato: (--after )?'tr_bogus' is not a transfer id \(.*\)\n$/)
    }
  })
})
