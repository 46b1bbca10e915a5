import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { TestMesh } from '../helpers/mesh.ts'

interface TreeTransfer { id: string, state: string, progress: { files?: { total: number, done: number, skipped: number, failed: number } }, lastError?: { code: string, message: string } }
interface FileRow { path: string, state: string, error?: { code: string, message: string } }

describe('a file of a tree that changes while it is read (real processes)', () => {
  let mesh: TestMesh

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    // Throttled so that reading the 4 MiB file spans many of the writer's changes below.
    await Promise.all([mesh.startAgent('store-1', ['--max-upload-rate', '16MiB']), mesh.startAgent('compute-1')])
  })
  afterAll(async () => { await mesh?.stop() })

  it('is asked for again a bounded number of times, then reported source_changed; never placed, the other files are', async () => {
    const src = join(mesh.volume('store-1'), 'hot')
    await mkdir(src, { recursive: true })
    await writeFile(join(src, 'calm.txt'), 'calm')
    const hot = join(src, 'hot.bin')
    await writeFile(hot, randomBytes(4 * 1024 * 1024))
    const t = await mesh.submit('agent://store-1/vol/hot/', 'agent://compute-1/vol/hot/', { retries: 0 })
    // The file's mtime moves on and on until the transfer ends (bounded: at most this many changes).
    let ended = false
    const changes = (async () => {
      const base = Date.now()
      for (let i = 1; i <= 200_000 && !ended; i++) {
        const at = new Date(base + i)
        await utimes(hot, at, at)
        await yieldToLoop()
      }
    })()
    const done = await mesh.waitForState(t.id, ['succeeded', 'failed'], 120_000) as unknown as TreeTransfer
    ended = true
    await changes
    expect(done.state).toBe('failed')
    expect(done.lastError?.code).toBe('source_changed')
    expect(done.progress.files).toEqual({ total: 2, done: 1, skipped: 0, failed: 1 })
    const rows = ((await mesh.api('GET', `/v1/transfers/${t.id}/files?state=failed`)).body as { items: FileRow[] }).items
    expect(rows).toMatchObject([{ path: 'hot.bin', error: { code: 'source_changed', message: expect.stringMatching(/changed while it was read, 4 times/) } }])
    const dst = join(mesh.volume('compute-1'), 'hot')
    expect(await readFile(join(dst, 'calm.txt'), 'utf8')).toBe('calm')
    // Neither at its name nor as a partial: nothing of it stays.
    expect(await readdir(dst)).toEqual(['calm.txt'])
    const log = await readFile(join(mesh.dir, 'logs', 'compute-1.log'), 'utf8')
    expect(log.match(/tree file changed while read; asking again/g)?.length).toBe(3)
  })
})
