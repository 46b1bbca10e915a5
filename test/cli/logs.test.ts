import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, spawnStaccato } from '../../cli/processes.ts'

const ID = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

async function until<T> (what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(100)) {
    const v = await probe()
    if (v !== undefined) return v
  }
  throw new Error(`timed out waiting for ${what}`)
}

describe('an agent\'s log', () => {
  let dir: string | undefined
  afterAll(async () => { if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })

  it('says at warn, with the address, that it cannot reach its coordinator; ISO times; one name key; a line when it stops', async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-logs-'))
    const coordinator = `/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${ID}`
    const log = join(dir, 'agent.log')
    const agent = spawnStaccato(['agent', '--name', 'lonely', '--coordinator', coordinator, '--data-dir', join(dir, 'data'),
      '--listen', '/ip4/127.0.0.1/tcp/0'], log)
    const exited = new Promise<number | null>(resolve => agent.once('exit', code => resolve(code)))
    try {
      const text = await until('a warning in the log', async () => {
        const t = await readFile(log, 'utf8').catch(() => '')
        return t.includes('"level":40') ? t : undefined
      })
      const line = text.split('\n').find(l => l.includes('"level":40')) as string
      const entry = JSON.parse(line) as Record<string, unknown>
      expect(entry).toMatchObject({ level: 40, msg: 'coordinator unreachable; will retry', coordinator, name: 'agent:lonely' })
      expect(entry.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      expect(text).toMatch(/"msg":"agent started"/)
      // Every line names the agent once (pino's name), not twice.
      for (const l of text.split('\n').filter(l => l.startsWith('{'))) expect(l.match(/"name":/g)).toHaveLength(1)
    } finally {
      agent.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
    expect(await readFile(log, 'utf8')).toContain('staccato agent: stopping (SIGTERM)\n')
  })
})
