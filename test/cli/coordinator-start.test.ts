import { describe, it, expect, afterAll } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, spawnStaccato, stopProcess, waitForJson } from '../../cli/processes.ts'
import type { ReadyInfo } from '../../cli/commands/coordinator.ts'
import { runCli } from './helpers.ts'

async function startCoordinator (dataDir: string): Promise<{ ready: ReadyInfo, log: () => Promise<string>, stop: () => Promise<void> }> {
  const readyFile = join(dataDir, 'ready.json')
  const logFile = join(dataDir, 'out.log')
  const child = spawnStaccato(['coordinator', '--data-dir', dataDir, '--api-port', '0', '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--ready-file', readyFile], logFile)
  const ready = await waitForJson<ReadyInfo>(readyFile, child, 30_000, 'the coordinator')
  return { ready, log: async () => await readFile(logFile, 'utf8'), stop: async () => await stopProcess(child) }
}

describe('staccato coordinator at start-up', () => {
  const dirs: string[] = []
  afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

  it('makes a stj_ join token like created ones, prints where agents join, and says when it stops', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'staccato-coord-'))
    dirs.push(dir)
    const c = await startCoordinator(dir)
    try {
      expect(c.ready.joinToken).toMatch(/^stj_[A-Za-z0-9_-]{32}$/)
      expect(c.ready.apiToken).toMatch(/^stc_/)
      expect((await readFile(join(dir, 'join-token'), 'utf8')).trim()).toBe(c.ready.joinToken)
      const log = await c.log()
      expect(log).toContain('staccato coordinator: agents join with --coordinator and one of:\n')
      expect(log).toContain(`  ${c.ready.multiaddrs[0]}   (this host only)\n`)
      expect(log).toContain(`join token in ${join(dir, 'join-token')}`)
    } finally {
      await c.stop()
    }
    expect(await c.log()).toContain('staccato coordinator: stopping (SIGTERM)\n')
  })

  it('keeps accepting a bootstrap join token made before (stc_)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'staccato-coord-'))
    dirs.push(dir)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'join-token'), 'stc_made-by-an-older-version\n', { mode: 0o600 })
    const c = await startCoordinator(dir)
    try {
      expect(c.ready.joinToken).toBe('stc_made-by-an-older-version')
    } finally {
      await c.stop()
    }
  })

  it('says in `token create --help` that --tenant is required and what the default tenant is called', async () => {
    const r = await runCli(['token', 'create', '--help'])
    expect(r.code).toBe(0)
    expect(r.stdout.replace(/\s+/g, ' ')).toMatch(/--tenant <tenant> required: .*tenant 'default'/)
  })
})
