import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest'
import { writeFile, rename } from 'node:fs/promises'
import { randomBytes, createHash } from 'node:crypto'
import { join } from 'node:path'
import { TestMesh, sha256File } from '../helpers/mesh.ts'
import { httpServers } from '../helpers/http-servers.ts'
import type { HttpServer } from '../helpers/http-servers.ts'

const MiB = 1024 * 1024
const SIZE = 64 * MiB
// The agent is slowed down so that the test can kill it mid-transfer.
// nginx listens on loopback, which agents refuse to reach unless told otherwise.
const LOCAL = ['--allow-address', '127.0.0.0/8']
const SLOW = [...LOCAL, '--max-download-rate', '16MiB', '--sync-every', '2MiB']

/** Replaces a file the way a publisher would: a new inode, so nginx sees a new ETag. */
async function publish (root: string, name: string, data: Buffer): Promise<string> {
  await writeFile(join(root, `.${name}.tmp`), data)
  await rename(join(root, `.${name}.tmp`), join(root, name))
  return createHash('sha256').update(data).digest('hex')
}

for (const server of httpServers()) describe(`http(s) source through the agents, against ${server.name}`, () => {
  // Named for the server these cases were first written against: it is whichever server the loop gives.
  let nginx: HttpServer
  let mesh: TestMesh | undefined
  beforeAll(async () => { nginx = await server.start() })
  afterAll(async () => { await nginx?.stop() })
  afterEach(async () => { await mesh?.stop(); mesh = undefined })

  async function killWhenJournaled (m: TestMesh, id: string, fraction: number): Promise<void> {
    await m.until(async () => {
      const j = (await m.status('compute-1')).journal.find(e => e.transferId === id)
      return (j?.durableOffset ?? 0) >= SIZE * fraction
    }, 60_000, `${fraction * 100}% journaled`)
    await m.kill('compute-1')
    await m.restartAgent('compute-1')
  }

  it('resumes with a Range request after the agent is killed mid-transfer', async () => {
    const digest = await publish(nginx.root, 'big.bin', randomBytes(SIZE))
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('compute-1', SLOW)
    const t = await mesh.submit(`${nginx.url}/big.bin`, 'agent://compute-1/vol/big.bin')
    await killWhenJournaled(mesh, t.id, 0.4)
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(done.sha256).toBe(digest)
    expect(await sha256File(join(mesh.volume('compute-1'), 'big.bin'))).toBe(digest)
    // nginx saw the resumed read: a ranged GET from past the kept prefix, guarded by If-Range, answered 206.
    const resumed = (await nginx.accessLog()).map(l => /^GET \/big\.bin (\d+) range="bytes=(\d+)-\d*" if_range="([^"]*)"/.exec(l)).filter(m => m !== null)
    expect(resumed.length, (await nginx.accessLog()).join("\n")).toBeGreaterThanOrEqual(1)
    const [, status, from, ifRange] = resumed[resumed.length - 1] as RegExpExecArray
    expect(status).toBe('206')
    expect(Number(from)).toBeGreaterThanOrEqual(SIZE * 0.4)
    expect(ifRange).not.toBe('')
  })

  it('restarts from zero, not splicing, when the file changes on the server mid-transfer', async () => {
    await publish(nginx.root, 'moving.bin', randomBytes(SIZE))
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('compute-1', SLOW)
    const t = await mesh.submit(`${nginx.url}/moving.bin`, 'agent://compute-1/vol/moving.bin')
    await mesh.until(async () => ((await mesh!.status('compute-1')).journal.find(e => e.transferId === t.id)?.durableOffset ?? 0) >= SIZE / 4, 60_000, 'a quarter journaled')
    const newDigest = await publish(nginx.root, 'moving.bin', randomBytes(SIZE))
    await mesh.kill('compute-1')
    await mesh.restartAgent('compute-1')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(done.sha256).toBe(newDigest)
    expect(await sha256File(join(mesh.volume('compute-1'), 'moving.bin'))).toBe(newDigest)
    // After the restart the whole new file was read from byte 0.
    const gets = (await nginx.accessLog()).filter(l => l.startsWith('GET /moving.bin '))
    expect(gets[gets.length - 1]).toMatch(/^GET \/moving\.bin 200 range="-" /)
  })

  it('uploads from an agent volume to nginx with PUT (agent://… → http://…?via=)', async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('store-1', LOCAL)
    const data = randomBytes(8 * MiB)
    await writeFile(join(mesh.volume('store-1'), 'up.bin'), data)
    const t = await mesh.submit('agent://store-1/vol/up.bin', `${nginx.url}/uploads/up.bin?via=store-1`)
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state, JSON.stringify(done.lastError)).toBe('succeeded')
    expect(await sha256File(join(nginx.root, 'uploads', 'up.bin'))).toBe(createHash('sha256').update(data).digest('hex'))
    expect((await nginx.accessLog()).some(l => /^PUT \/uploads\/up\.bin (201|204) /.test(l))).toBe(true)
  })
})

describe('a third-party plug-in loaded by an agent (--plugin)', () => {
  let mesh: TestMesh
  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('store-1', ['--plugin', join(import.meta.dirname, '../fixtures/plugins/mem.ts')])
  })
  afterAll(async () => { await mesh?.stop() })

  it('registers the plug-in and moves bytes through it both ways', async () => {
    const agent = (await mesh.api('GET', '/v1/agents/store-1')).body as { plugins: string[] }
    expect(agent.plugins).toContain('mem')
    const data = randomBytes(4 * MiB)
    await writeFile(join(mesh.volume('store-1'), 'in.bin'), data)
    const digest = createHash('sha256').update(data).digest('hex')
    const up = await mesh.waitForState((await mesh.submit('agent://store-1/vol/in.bin', 'mem://bucket/in.bin?via=store-1')).id, ['succeeded', 'failed'])
    expect(up.state, JSON.stringify(up.lastError)).toBe('succeeded')
    const back = await mesh.waitForState((await mesh.submit('mem://bucket/in.bin?via=store-1', 'agent://store-1/vol/back.bin')).id, ['succeeded', 'failed'])
    expect(back.state, JSON.stringify(back.lastError)).toBe('succeeded')
    expect(await sha256File(join(mesh.volume('store-1'), 'back.bin'))).toBe(digest)
  })
})
