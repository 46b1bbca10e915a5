import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFile, readdir } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { Blake3Hasher } from '@napi-rs/blake-hash'
import { TestMesh, sha256File } from '../helpers/mesh.ts'
import { runCli } from '../cli/helpers.ts'

const MiB = 1024 * 1024

async function blake3File (file: string): Promise<string> {
  const h = new Blake3Hasher()
  for await (const chunk of createReadStream(file, { highWaterMark: MiB })) h.update(chunk as Buffer)
  return h.digest('hex')
}

interface Record { id: string, state: string, checksumMode?: string, sha256?: string, blake3?: string, lastError?: { code: string }, attempt: number }

/** The checksum mode of a transfer, end to end: coordinator, both agents (real processes on loopback) and the CLI. */
describe('checksum modes', () => {
  let mesh: TestMesh
  let source: string

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('compute-1')])
    source = join(mesh.volume('store-1'), 'data.bin')
    await writeFile(source, randomBytes(8 * MiB))
  })
  afterAll(async () => { await mesh?.stop() })

  async function copy (mode: string | undefined, name: string): Promise<Record> {
    const t = await mesh.submit('agent://store-1/vol/data.bin', `agent://compute-1/vol/${name}`, mode === undefined ? {} : { checksumMode: mode })
    await mesh.waitForState(t.id, ['succeeded', 'failed'])
    return (await mesh.api('GET', `/v1/transfers/${t.id}`)).body as Record
  }

  it('sha256 (the default): the record shows the sha256 of the object', async () => {
    const r = await copy(undefined, 'default.bin')
    expect(r).toMatchObject({ state: 'succeeded', sha256: await sha256File(source) })
    expect(r.blake3).toBeUndefined()
  })

  it('blake3: both agents hash in blake3 and the record shows the mode and that digest', async () => {
    const r = await copy('blake3', 'fast.bin')
    expect(r).toMatchObject({ state: 'succeeded', checksumMode: 'blake3', blake3: await blake3File(source) })
    expect(r.sha256).toBeUndefined()
    expect(await sha256File(join(mesh.volume('compute-1'), 'fast.bin'))).toBe(await sha256File(source))
  })

  it('none: the copy succeeds with no digest in the record', async () => {
    const r = await copy('none', 'unchecked.bin')
    expect(r).toMatchObject({ state: 'succeeded', checksumMode: 'none' })
    expect(r.sha256).toBeUndefined()
    expect(r.blake3).toBeUndefined()
    expect(await sha256File(join(mesh.volume('compute-1'), 'unchecked.bin'))).toBe(await sha256File(source))
  })

  it('blake3 catches bytes damaged in transit too, and leaves nothing at the target', async () => {
    await mesh.startAgent('broken', [], {}, { faults: 'corrupt-data=1000' })
    await writeFile(join(mesh.volume('broken'), 'b.bin'), randomBytes(4 * MiB))
    const t = await mesh.submit('agent://broken/vol/b.bin', 'agent://compute-1/vol/damaged/b.bin', { checksumMode: 'blake3', retries: 5 })
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('checksum_mismatch')
    expect(await readdir(join(mesh.volume('compute-1'), 'damaged')).catch(() => [])).toEqual([])
  })

  it('the CLI submits a mode with --checksum and shows it with the digest', async () => {
    const env = { STACCATO_URL: mesh.ready.apiUrl, STACCATO_TOKEN: mesh.ready.apiToken }
    const r = await runCli(['transfer', 'submit', 'agent://store-1/vol/data.bin', 'agent://compute-1/vol/cli.bin', '--checksum', 'blake3', '--wait'], env)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const digest = await blake3File(source)
    const id = /^submitted (tr_\S+)$/m.exec(r.stdout)?.[1]
    expect(r.stdout).toMatch(new RegExp(`^${id}  succeeded  blake3 ${digest}$`, 'm'))
    const shown = await runCli(['transfer', 'show', id!], env)
    expect(shown.code).toBe(0)
    expect(shown.stdout).toMatch(/^checksum: +blake3$/m)
    expect(shown.stdout).toMatch(new RegExp(`^blake3: +${digest}$`, 'm'))
  })
})
