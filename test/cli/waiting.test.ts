import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestMesh } from '../helpers/mesh.ts'
import { runCli } from './helpers.ts'

interface Waiting { reason: string, agent: string, since: string }

describe('a transfer waiting for an offline agent says so', () => {
  let mesh: TestMesh | undefined
  let home: string | undefined
  afterAll(async () => {
    await mesh?.stop()
    if (home !== undefined) await rm(home, { recursive: true, force: true })
  })

  it('shows waiting in the record, the CLI and the events, and clears it when the transfer starts', async () => {
    mesh = await TestMesh.create()
    const m = mesh
    await m.startCoordinator()
    await Promise.all([m.startAgent('store-1'), m.startAgent('compute-3')])
    home = await mkdtemp(join(tmpdir(), 'staccato-cli-home-'))
    const env = { STACCATO_URL: m.ready.apiUrl, STACCATO_TOKEN: m.ready.apiToken, XDG_CONFIG_HOME: home }
    await writeFile(join(m.volume('store-1'), 'a.bin'), randomBytes(256 * 1024))
    await m.kill('compute-3', 'SIGTERM')
    await m.waitForAgent('compute-3', false)

    const t = await m.submit('agent://store-1/vol/a.bin', 'agent://compute-3/vol/a.bin')
    let waiting: Waiting | undefined
    await m.until(async () => {
      waiting = ((await m.transfer(t.id)) as unknown as { waiting?: Waiting }).waiting
      return waiting !== undefined
    }, 30_000, 'the record to say why it waits')
    expect(waiting).toMatchObject({ reason: 'agent_offline', agent: 'compute-3' })
    expect(Number.isNaN(Date.parse(waiting?.since ?? ''))).toBe(false)

    const show = await runCli(['transfer', 'show', t.id], env)
    expect(show.code).toBe(0)
    expect(show.stdout).toMatch(new RegExp(`^waiting:\\s+agent compute-3 offline since ${waiting?.since ?? ''}$`, 'm'))
    const list = await runCli(['transfer', 'list'], env)
    expect(list.stdout).toMatch(new RegExp(`^${t.id}\\s+queued \\(compute-3 offline\\)`, 'm'))
    const events = await runCli(['events', '--topics', `transfer.${t.id}.waiting`], env)
    expect(events.stdout).toContain(`transfer.${t.id}.waiting  {"reason":"agent_offline","agent":"compute-3"`)

    await m.restartAgent('compute-3')
    const done = await m.waitForState(t.id, ['succeeded', 'failed', 'canceled'])
    expect(done.state).toBe('succeeded')
    expect((done as unknown as { waiting?: Waiting }).waiting).toBeUndefined()
  })
})
