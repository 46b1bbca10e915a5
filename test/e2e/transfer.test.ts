import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFile, readdir, stat } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { TestMesh, sha256File } from '../helpers/mesh.ts'

const MiB = 1024 * 1024

async function makeFile (file: string, bytes: number): Promise<string> {
  const data = randomBytes(bytes)
  await writeFile(file, data)
  return await sha256File(file)
}

describe('agent to agent transfers (real processes on loopback)', () => {
  let mesh: TestMesh

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('compute-1')])
  })
  afterAll(async () => { await mesh?.stop() })

  it('copies a 64 MiB file directly between agents and the digests match', async () => {
    const digest = await makeFile(join(mesh.volume('store-1'), 'image.bin'), 64 * MiB)
    const t = await mesh.submit('agent://store-1/vol/image.bin', 'agent://compute-1/vol/copies/image.bin')
    expect(t.state).toBe('queued')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(done.sha256).toBe(digest)
    expect(done.progress.bytesDone).toBe(64 * MiB)
    expect(await sha256File(join(mesh.volume('compute-1'), 'copies', 'image.bin'))).toBe(digest)
    // No partial file is left beside the target.
    expect(await readdir(join(mesh.volume('compute-1'), 'copies'))).toEqual(['image.bin'])
    // The bytes went from store-1 to compute-1 directly.
    expect((await mesh.status('store-1')).counters.bytesServed).toBeGreaterThanOrEqual(64 * MiB)
  })

  it('returns the first record for a retried submission with the same Idempotency-Key', async () => {
    await makeFile(join(mesh.volume('store-1'), 'idem.bin'), 1 * MiB)
    const body = { source: 'agent://store-1/vol/idem.bin', destination: 'agent://compute-1/vol/idem.bin' }
    const first = await mesh.api('POST', '/v1/transfers', body, { 'idempotency-key': 'k-1' })
    const second = await mesh.api('POST', '/v1/transfers', body, { 'idempotency-key': 'k-1' })
    expect(first.status).toBe(201)
    expect(second.status).toBe(200)
    expect((second.body as { id: string }).id).toBe((first.body as { id: string }).id)
    await mesh.waitForState((first.body as { id: string }).id, ['succeeded'])
  })

  it('fails fast with not_found, without retries, when the source does not exist', async () => {
    const t = await mesh.submit('agent://store-1/vol/missing.bin', 'agent://compute-1/vol/missing.bin', { retries: 5 })
    const done = await mesh.waitForState(t.id, ['failed', 'succeeded'])
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('not_found')
    expect(done.attempt).toBe(1)
    await expect(stat(join(mesh.volume('compute-1'), 'missing.bin'))).rejects.toThrow(/ENOENT/)
  })

  it('fails with checksum_mismatch when the user-supplied digest is wrong, and leaves no target', async () => {
    await makeFile(join(mesh.volume('store-1'), 'sum.bin'), 2 * MiB)
    const t = await mesh.submit('agent://store-1/vol/sum.bin', 'agent://compute-1/vol/sum.bin', { checksum: { algorithm: 'sha256', value: '0'.repeat(64) } })
    const done = await mesh.waitForState(t.id, ['failed', 'succeeded'])
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('checksum_mismatch')
    expect((await readdir(mesh.volume('compute-1'))).filter(n => n.includes('sum.bin'))).toEqual([])
  })
})

describe('damage in transit (a source agent with a fault composed in that flips a byte after hashing)', () => {
  let mesh: TestMesh
  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await mesh.startAgent('compute-1')
  })
  afterAll(async () => { await mesh?.stop() })

  it('discards the partial and retries once from zero: one damaged stream still ends with the right digest', async () => {
    await mesh.startAgent('flaky', [], {}, { faults: 'corrupt-data=1' })
    const digest = await makeFile(join(mesh.volume('flaky'), 'a.bin'), 4 * MiB)
    const t = await mesh.submit('agent://flaky/vol/a.bin', 'agent://compute-1/vol/a.bin')
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(done.sha256).toBe(digest)
    expect(done.attempt).toBe(1)
    // The source served the file twice: the damaged stream and the retry from zero.
    expect((await mesh.status('flaky')).counters.bytesServed).toBe(2 * 4 * MiB)
    expect(await sha256File(join(mesh.volume('compute-1'), 'a.bin'))).toBe(digest)
  })

  it('fails with checksum_mismatch when the retry is damaged too, and leaves nothing at the target', async () => {
    await mesh.startAgent('broken', [], {}, { faults: 'corrupt-data=1000' })
    await makeFile(join(mesh.volume('broken'), 'b.bin'), 4 * MiB)
    const t = await mesh.submit('agent://broken/vol/b.bin', 'agent://compute-1/vol/b.bin', { retries: 5 })
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('checksum_mismatch')
    expect(done.attempt).toBe(1)
    expect((await readdir(mesh.volume('compute-1'))).filter(n => n.includes('b.bin'))).toEqual([])
  })
})
