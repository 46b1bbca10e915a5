import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CONTROL_PROTOCOL, ControlChannel, createMeshNode } from '../../mesh/index.ts'
import type { ControlParams, MeshNode } from '../../mesh/index.ts'
import { spawnStaccato, stopProcess } from '../../cli/index.ts'
import { TestMesh } from '../helpers/mesh.ts'

const REFUSED = 'is not enrolled and its join token is missing, invalid, expired or already used'

/**
 * Who may join the mesh: only agents with a valid join token, and after that
 * only with the key they enrolled with. Attacks come from real agent
 * processes (which must exit with a clear message) and from a bare libp2p
 * node speaking the control protocol itself.
 */
describe('mesh: enrollment and the control protocol', () => {
  let mesh: TestMesh
  const nodes: MeshNode[] = []

  /** Runs `staccato agent` expecting the coordinator to refuse it; returns its exit code and output. */
  async function refusedAgent (name: string, joinToken?: string, dataDir = join(mesh.dir, 'agents', name)): Promise<{ code: number | null, log: string }> {
    const log = join(mesh.dir, 'logs', `${name}-refused.log`)
    const child = spawnStaccato([
      'agent', '--name', name, '--coordinator', mesh.ready.multiaddrs[0], '--data-dir', dataDir,
      '--volume', `vol=${mesh.volume('a')}`, '--listen', '/ip4/127.0.0.1/tcp/0', ...(joinToken !== undefined ? ['--join-token', joinToken] : [])
    ], log)
    const exited = once(child, 'exit') as Promise<[number | null]>
    // Only a net for an agent that never exits, far above a refused start's time under load (which passed 30 s at load 35–42) and below the test's timeout.
    const timer = setTimeout(() => { void stopProcess(child, 'SIGKILL') }, 150_000)
    const [code] = await exited
    clearTimeout(timer)
    return { code, log: await readFile(log, 'utf8') }
  }

  async function joinToken (body: Record<string, unknown>): Promise<{ id: string, token: string, expiresAt?: string }> {
    const res = await mesh.api('POST', '/v1/agent-tokens', body)
    if (res.status !== 201) throw new Error(`agent-token create answered ${res.status}`)
    return res.body as { id: string, token: string, expiresAt?: string }
  }

  async function controlChannel (): Promise<ControlChannel> {
    const node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    nodes.push(node)
    const stream = await node.dialProtocol(multiaddr(mesh.ready.multiaddrs[0]), CONTROL_PROTOCOL)
    return new ControlChannel(stream, {})
  }

  function registration (name: string, joinToken?: string): ControlParams<'register'> {
    return { name, version: '0.1.0', volumes: [{ name: 'vol', readOnly: false }], plugins: ['agent'], addrs: [], active: [], ...(joinToken !== undefined ? { joinToken } : {}) } as ControlParams<'register'>
  }

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('a')
  })
  afterAll(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await mesh.stop()
  })

  it('refuses agents without a join token, with a wrong, expired or spent one: each process exits 2 saying why', async () => {
    const expiring = await joinToken({ expiresIn: 1 })
    const single = await joinToken({ singleUse: true })
    // Spend the single-use token on a real enrollment first (TestMesh.startAgent would use the bootstrap token).
    const spender = spawnStaccato([
      'agent', '--name', 'spender', '--coordinator', mesh.ready.multiaddrs[0], '--join-token', single.token,
      '--data-dir', join(mesh.dir, 'agents', 'spender'), '--volume', `vol=${mesh.volume('a')}`, '--listen', '/ip4/127.0.0.1/tcp/0'
    ], join(mesh.dir, 'logs', 'spender.log'))
    try {
      await mesh.waitForAgent('spender', true)
      // Let the expiring token run out: the coordinator's clock decides, we only wait for it to pass.
      while (Date.now() <= Date.parse(expiring.expiresAt ?? '') + 50) await sleep(50)
      const results = await Promise.all([
        refusedAgent('no-token'),
        refusedAgent('wrong-token', 'stj_thisisnotatokenthecoordinatorhasever'),
        refusedAgent('expired-token', expiring.token),
        refusedAgent('second-spender', single.token)
      ])
      for (const [i, r] of results.entries()) {
        expect(r.code, r.log).toBe(2)
        expect(r.log, `case ${i}`).toContain(REFUSED)
      }
      const agents = (await mesh.api('GET', '/v1/agents')).body as { items: Array<{ name: string }> }
      const names = agents.items.map(a => a.name)
      for (const n of ['no-token', 'wrong-token', 'expired-token', 'second-spender']) expect(names).not.toContain(n)
      // The coordinator's log says which check failed; the agent was only told that one did.
      const log = await readFile(join(mesh.dir, 'logs', 'coordinator.log'), 'utf8')
      expect(log).toMatch(/single-use join token jt_\w+ was used by spender/)
      expect(log).toMatch(/join token jt_\w+ expired at/)
      // The single-use token was spent, not the enrollment: the agent that used it comes back after a restart.
      const listed = (await mesh.api('GET', '/v1/agent-tokens')).body as { items: Array<{ id: string, usedBy?: { agent: string } }> }
      expect(listed.items.find(t => t.id === single.id)?.usedBy?.agent).toBe('spender')
      await stopProcess(spender)
      await mesh.waitForAgent('spender', false)
    } finally {
      await stopProcess(spender)
    }
    const again = spawnStaccato([
      'agent', '--name', 'spender', '--coordinator', mesh.ready.multiaddrs[0],
      '--data-dir', join(mesh.dir, 'agents', 'spender'), '--volume', `vol=${mesh.volume('a')}`, '--listen', '/ip4/127.0.0.1/tcp/0'
    ], join(mesh.dir, 'logs', 'spender.log'))
    try {
      await mesh.waitForAgent('spender', true)
    } finally {
      await stopProcess(again)
    }
  })

  it('refuses an agent with a fresh key claiming an enrolled name, even with a valid join token', async () => {
    const before = (await mesh.api('GET', '/v1/agents/a')).body as { peerId: string, online: boolean }
    const r = await refusedAgent('a', mesh.ready.joinToken, join(mesh.dir, 'agents', 'impostor-a'))
    expect(r.code).toBe(2)
    expect(r.log).toContain("agent name 'a' is enrolled with another key")
    const after = (await mesh.api('GET', '/v1/agents/a')).body as { peerId: string, online: boolean }
    expect(after.peerId).toBe(before.peerId)
    expect(after.online).toBe(true)
    const log = await readFile(join(mesh.dir, 'logs', 'coordinator.log'), 'utf8')
    expect(log).toContain('refused an agent claiming an enrolled name with another key')
  })

  it('answers nothing but register to a peer that has not registered', async () => {
    const channel = await controlChannel()
    await expect(channel.call('report', { transferId: 'tr_x', attempt: 1, outcome: 'failed' } as ControlParams<'report'>)).rejects.toMatchObject({ code: 'permission_denied' })
    await expect(channel.call('heartbeat', { active: [] } as unknown as ControlParams<'heartbeat'>)).rejects.toMatchObject({ code: 'permission_denied' })
    // Casts before register are dropped, not obeyed: the channel is still usable and still unregistered.
    await channel.cast('progress', { transferId: 'tr_x', attempt: 1, bytesDone: 5 } as ControlParams<'progress'>)
    await expect(channel.call('register', registration('stranger'))).rejects.toMatchObject({ code: 'permission_denied' })
    await expect(channel.call('register', registration('stranger', 'stj_wrong'))).rejects.toMatchObject({ code: 'permission_denied' })
    const revoked = await joinToken({})
    expect((await mesh.api('DELETE', `/v1/agent-tokens/${revoked.id}`)).status).toBe(204)
    await expect(channel.call('register', registration('stranger', revoked.token))).rejects.toMatchObject({ code: 'permission_denied' })
    await expect(channel.call('register', registration('a', mesh.ready.joinToken))).rejects.toMatchObject({ code: 'permission_denied', message: "agent name 'a' is enrolled with another key" })
    await expect(channel.call('report', { transferId: 'tr_x', attempt: 1, outcome: 'failed' } as ControlParams<'report'>)).rejects.toMatchObject({ code: 'permission_denied' })
    expect((await mesh.api('GET', '/v1/agents/stranger')).status).toBe(404)
    // Malformed messages end this channel only; the coordinator and its agents carry on.
    channel.stream.send(new Uint8Array([0, 0, 0, 2, 0x5b, 0x5b]))
    await channel.closed
    expect((await mesh.api('GET', '/v1/agents/a')).body).toMatchObject({ online: true })
  })
})
