import { createHash, randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BlobIndex } from '../../agent/blob-index.ts'
import { newCounters } from '../../agent/counters.ts'
import { startRegistryMirror } from '../../agent/registry-mirror.ts'
import type { RegistryMirror } from '../../agent/registry-mirror.ts'
import type { PluginSet } from '../../agent/resolve.ts'
import type { OciPlugin } from '../../protocols/index.ts'

/**
 * The mirror's serving of a blob the agent holds, over a real socket on
 * loopback. Blobs held are served without the registry, so the oci plug-in
 * is never called here (test/e2e/oci-swarm.test.ts runs the whole mirror
 * with skopeo and a real registry).
 */
describe('the registry mirror serving a held blob', () => {
  const bytes = randomBytes(3 * 1024 * 1024 + 5)
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
  const counters = newCounters()
  let dir: string
  let mirror: RegistryMirror
  let path: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-mirror-'))
    const blobs = await BlobIndex.open(dir, 'self', new Map() as unknown as PluginSet)
    await blobs.put(digest, bytes.length, (async function * () { yield bytes })(), () => {})
    const oci = new Proxy({}, { get: (_, name) => { throw new Error(`the oci plug-in was called (${String(name)}) for a held blob`) } }) as OciPlugin
    mirror = await startRegistryMirror({ listen: '0', images: ['reg.example/app'], oci, blobs, counters, log: () => {} })
    path = `/v2/app/blobs/${digest}?ns=reg.example`
  })
  afterAll(async () => {
    await mirror.close()
    await rm(dir, { recursive: true, force: true })
  })

  async function get (headers: Record<string, string> = {}): Promise<{ status: number, body: Buffer, headers: Record<string, unknown> }> {
    const res = await fetch(`http://127.0.0.1:${mirror.port}${path}`, { headers })
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: Object.fromEntries(res.headers) }
  }

  it('sends the whole blob byte for byte, and any range of it', async () => {
    const whole = await get()
    expect(whole.status).toBe(200)
    expect(whole.headers['docker-content-digest']).toBe(digest)
    expect(whole.body.equals(bytes)).toBe(true)
    const part = await get({ range: `bytes=${1024 * 1024 - 2}-${2 * 1024 * 1024 + 2}` })
    expect(part.status).toBe(206)
    expect(part.body.equals(bytes.subarray(1024 * 1024 - 2, 2 * 1024 * 1024 + 3))).toBe(true)
  })

  it('lets a client go away mid-blob and serves the next one whole', async () => {
    // Reads the first bytes, then drops the connection while the mirror still has most of the blob to send.
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: mirror.port, path }, res => {
        res.once('data', () => { req.destroy(); resolve() })
      })
      req.once('error', err => { if (!req.destroyed) reject(err) })
      req.end()
    })
    const after = await get()
    expect(after.status).toBe(200)
    expect(after.body.equals(bytes)).toBe(true)
  })
})
