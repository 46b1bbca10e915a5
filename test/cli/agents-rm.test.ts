import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestMesh } from '../helpers/mesh.ts'
import { runCli } from './helpers.ts'

const MiB = 1024 * 1024

describe('staccato agents rm: decommissioning and re-keying a host', () => {
  let mesh: TestMesh
  let env: Record<string, string>
  let home: string

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('store-1')
    // Slow, so that the copy is still in flight when the agent is removed.
    await mesh.startAgent('compute-1', ['--max-download-rate', '4MiB'])
    home = await mkdtemp(join(tmpdir(), 'staccato-rm-'))
    env = { STACCATO_URL: mesh.ready.apiUrl, STACCATO_TOKEN: mesh.ready.apiToken, XDG_CONFIG_HOME: home }
  })
  afterAll(async () => {
    await mesh?.stop()
    if (home !== undefined) await rm(home, { recursive: true, force: true })
  })

  it('refuses while the agent takes part in a transfer, fails it with --force, and lets the name enroll again with a new key', async () => {
    await writeFile(join(mesh.volume('store-1'), 'big.bin'), randomBytes(64 * MiB))
    const t = await mesh.submit('agent://store-1/vol/big.bin', 'agent://compute-1/vol/big.bin')
    await mesh.waitForState(t.id, ['active'])

    const refused = await runCli(['agents', 'rm', 'compute-1'], env)
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(`agent 'compute-1' takes part in 1 unfinished transfer(s) (${t.id})`)
    expect((await mesh.api('GET', '/v1/agents/compute-1')).status).toBe(200)

    const oldPeer = (await mesh.api('GET', '/v1/agents/compute-1')).body as { peerId: string }
    await mesh.kill('compute-1')
    const removed = await runCli(['agents', 'rm', 'compute-1', '--force'], env)
    expect(removed.stderr).toBe('')
    expect(removed.code).toBe(0)
    expect(removed.stdout).toBe('removed agent compute-1\n')
    expect((await mesh.api('GET', '/v1/agents/compute-1')).status).toBe(404)
    const failed = await mesh.transfer(t.id) as unknown as { state: string, lastError: { code: string, message: string } }
    expect(failed.state).toBe('failed')
    expect(failed.lastError).toMatchObject({ code: 'agent_removed', message: "agent 'compute-1' was removed" })

    // Reinstalled: a new key (another data directory) and the join token.
    await mesh.startAgent('compute-1', ['--data-dir', join(home, 'new-compute-1')])
    const again = (await mesh.api('GET', '/v1/agents/compute-1')).body as { peerId: string, online: boolean }
    expect(again.online).toBe(true)
    expect(again.peerId).not.toBe(oldPeer.peerId)

    const missing = await runCli(['agents', 'rm', 'nobody'], env)
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain("no agent named 'nobody'")
  })
})
