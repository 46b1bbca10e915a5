import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestMesh, sha256File } from '../helpers/mesh.ts'
import { RawFlood, loopbackHosts } from '../helpers/flood.ts'

function tcpPort (addrs: string[]): number {
  const m = /\/ip4\/127\.0\.0\.1\/tcp\/(\d+)/.exec(addrs.join(' '))
  if (m === null) throw new Error(`no loopback address in ${addrs.join(', ')}`)
  return Number(m[1])
}

/**
 * A stranger with no key floods the coordinator's and an agent's mesh ports
 * with sockets that never speak. An enrolled agent that restarts meanwhile
 * must register again and move data from the flooded agent.
 */
describe('mesh: silent sockets from other hosts do not lock enrolled agents out', () => {
  let mesh: TestMesh
  const floods: RawFlood[] = []

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('a')
    await mesh.startAgent('b')
    await writeFile(join(mesh.volume('a'), 'x.bin'), randomBytes(1024 * 1024))
  })
  afterAll(async () => {
    for (const f of floods) f.stop()
    await mesh.stop()
  })

  it('an agent restarted during the flood registers again and pulls from the flooded agent', async () => {
    const a = mesh.agents.get('a')?.info
    if (a === undefined) throw new Error('agent a did not start')
    for (const port of [tcpPort(mesh.ready.multiaddrs), tcpPort(a.addrs)]) {
      floods.push(new RawFlood(port, loopbackHosts(8), 25, { pauseMs: 500 }).start())
    }
    await Promise.all(floods.map(async f => { await f.saturated() }))

    await mesh.restartAgent('b')
    await mesh.until(async () => (await mesh.status('b') as unknown as { coordinator: { registered: boolean } }).coordinator.registered, 30_000, 'agent b registered again')
    const t = await mesh.submit('agent://a/vol/x.bin', 'agent://b/vol/x.bin')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'], 30_000)
    expect(done.state).toBe('succeeded')
    expect(await sha256File(join(mesh.volume('b'), 'x.bin'))).toBe(await sha256File(join(mesh.volume('a'), 'x.bin')))
  })
})
