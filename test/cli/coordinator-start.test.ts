import { createServer } from 'node:net'
import type { Server } from 'node:net'
import { describe, it, expect, afterAll } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, spawnStaccato, stopProcess, waitForJson } from '../../cli/processes.ts'
import type { ReadyInfo } from '../../cli/commands/coordinator.ts'
import { runCli } from './helpers.ts'
import { startCoordinator as startInProcess } from '../../coordinator/index.ts'
import { coordinatorConfig } from '../../cli/config-coordinator.ts'

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

  describe('a port it is told to use and cannot', () => {
    /** Holds a loopback port as another process would. */
    async function hold (): Promise<{ port: number, server: Server }> {
      const server = createServer()
      await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve) })
      const address = server.address()
      if (address === null || typeof address === 'string') throw new Error('not a TCP server')
      return { port: address.port, server }
    }

    async function coordinatorWith (args: string[]): Promise<{ code: number | null, stderr: string }> {
      const dir = await mkdtemp(join(tmpdir(), 'staccato-coord-'))
      dirs.push(dir)
      return await runCli(['coordinator', '--data-dir', dir, ...args])
    }

    it('says in one line which REST port is taken and which option chooses it, and exits 2', async () => {
      const { port, server } = await hold()
      try {
        const r = await coordinatorWith(['--api-host', '127.0.0.1', '--api-port', String(port), '--listen', '/ip4/127.0.0.1/tcp/0'])
        expect(r.code).toBe(2)
        expect(r.stderr).toBe(`staccato: the REST API cannot listen on 127.0.0.1:${port}: the address is already in use (another process holds it; choose another with --api-port (or --api-host))\n`)
      } finally {
        server.close()
      }
    })

    it('says which mesh address is taken and which option chooses it, and exits 2', async () => {
      const { port, server } = await hold()
      try {
        const r = await coordinatorWith(['--api-port', '0', '--listen', `/ip4/127.0.0.1/tcp/${port}`])
        expect(r.code).toBe(2)
        expect(r.stderr).toBe(`staccato: the mesh cannot listen on /ip4/127.0.0.1/tcp/${port}: the address is already in use (another process holds it; choose another with --listen)\n`)
      } finally {
        server.close()
      }
    })

    it('in process, closes what it opened before the taken port: the same data directory starts at once', async () => {
      const { port, server } = await hold()
      const dir = await mkdtemp(join(tmpdir(), 'staccato-coord-'))
      dirs.push(dir)
      try {
        const flags = { dataDir: dir, apiHost: '127.0.0.1', listen: ['/ip4/127.0.0.1/tcp/0'], logLevel: 'silent' }
        await expect(startInProcess(await coordinatorConfig({ ...flags, apiPort: String(port) }, {}))).rejects.toMatchObject({ code: 'address_in_use' })
        // Its store's LevelDB lock and its mesh port were given back: a second start on the same directory succeeds.
        const c = await startInProcess(await coordinatorConfig({ ...flags, apiPort: '0' }, {}))
        await c.stop()
      } finally {
        server.close()
      }
    })
  })

  it('a child that exits before it is ready is reported with the last lines of its log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'staccato-coord-'))
    dirs.push(dir)
    const readyFile = join(dir, 'ready.json')
    const child = spawnStaccato(['coordinator', '--data-dir', dir, '--api-port', 'seventy', '--ready-file', readyFile], join(dir, 'out.log'))
    const err = await waitForJson(readyFile, child, 30_000, 'the coordinator').then(() => undefined, (e: unknown) => e as Error)
    expect(err?.message).toMatch(/^the coordinator exited \(2\) before it was ready; its log \(.*out\.log\) ends:\nstaccato: .*--api-port/)
  })
})
