import { describe, it, expect, afterEach } from 'vitest'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { TestMesh, sha256File } from '../helpers/mesh.ts'

const MiB = 1024 * 1024
const FILE = 6 * MiB
const NAMES = ['f1.bin', 'f2.bin', 'f3.bin', 'f4.bin']

/** The files being written: one per stream of large files (two by default, so two of these four at once). */
interface TreeJournal { transferId: string, treeParts?: Array<{ path: string, durableOffset: number }> }

describe('a tree resumes after either agent is killed (SIGKILL)', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.stop(); mesh = undefined })

  async function start (): Promise<{ m: TestMesh, dst: string, digests: Record<string, string>, id: string, kept: () => Promise<{ path: string, durableOffset: number }> }> {
    const m = await TestMesh.create()
    mesh = m
    await m.startCoordinator()
    // Slow enough (about 6 s for the tree, 1.5 s a file) that the kill lands inside a file even on a loaded machine; offsets journaled every MiB.
    await Promise.all([m.startAgent('store-1', ['--max-upload-rate', '4MiB']), m.startAgent('compute-1', ['--sync-every', '1MiB'])])
    const src = join(m.volume('store-1'), 'tree', 'sub')
    await mkdir(src, { recursive: true })
    const digests: Record<string, string> = {}
    for (const name of NAMES) {
      await writeFile(join(src, name), randomBytes(FILE))
      digests[name] = await sha256File(join(src, name))
    }
    const t = await m.submit('agent://store-1/vol/tree/', 'agent://compute-1/vol/copy/')
    const dst = join(m.volume('compute-1'), 'copy', 'sub')
    let kept = { path: '', durableOffset: 0 }
    // Kill once one file is in place and another is part written, with at least 1 MiB of it journaled.
    await m.until(async () => {
      const j = (await m.status('compute-1')).journal.find(e => e.transferId === t.id) as TreeJournal | undefined
      const placed = (await readdir(dst).catch(() => [])).filter(n => NAMES.includes(n))
      const part = j?.treeParts?.find(p => p.durableOffset >= MiB)
      if (part === undefined || placed.length === 0) return false
      kept = part
      return true
    }, 60_000, 'one file in place and another part journaled')
    return { m, dst, digests, id: t.id, kept: async () => kept }
  }

  /**
   * The most the next attempt may move: the files not in place, less the journaled prefix of the one that was
   * partial when the journal was read. `placed` is read after the kill; the journal just before it, so the partial
   * file may have been finished and placed in between (then its prefix is already counted as placed).
   */
  function resumeBound (placed: string[], kept: { path: string, durableOffset: number }): number {
    const partial = placed.includes(kept.path.split('/').pop() as string) ? 0 : kept.durableOffset
    return NAMES.length * FILE - placed.length * FILE - partial
  }

  it('the source agent killed: the next attempt, once it is back, skips the files in place and resumes the partial one', async () => {
    const { m, dst, digests, id, kept: keptAt } = await start()
    const kept = await keptAt()
    await m.kill('store-1')
    const placed = (await readdir(dst)).filter(n => NAMES.includes(n))
    await m.restartAgent('store-1')
    const done = await m.waitForState(id, ['succeeded', 'failed'], 120_000)
    expect(done.state).toBe('succeeded')
    expect(done.attempt).toBeGreaterThanOrEqual(2)
    for (const name of NAMES) expect(await sha256File(join(dst, name))).toBe(digests[name])
    expect((await readdir(dst)).sort()).toEqual([...NAMES].sort())
    // The restarted source served neither the files in place nor the journaled prefix of the partial one.
    const served = (await m.status('store-1')).counters.bytesServed
    expect(served, JSON.stringify({ kept, placed })).toBeLessThanOrEqual(resumeBound(placed, kept))
  })

  it('finished files are not sent again, the partial one resumes from its journaled offset, and no partial shows at a target name', async () => {
    const { m, dst, digests, id, kept: keptAt } = await start()
    const t = { id }
    const kept = await keptAt()
    await m.kill('compute-1')
    const placed = (await readdir(dst)).filter(n => NAMES.includes(n))
    expect(placed.length).toBeLessThan(NAMES.length)
    await m.restartAgent('compute-1')

    const done = await m.waitForState(t.id, ['succeeded', 'failed'])
    expect(done.state).toBe('succeeded')
    expect(done.attempt).toBeGreaterThanOrEqual(2)
    for (const name of NAMES) expect(await sha256File(join(dst, name))).toBe(digests[name])
    expect((await readdir(dst)).sort()).toEqual([...NAMES].sort())
    // The restarted agent received neither the files already in place nor the journaled prefix of the partial one.
    const received = (await m.status('compute-1')).counters.bytesReceived
    expect(received, JSON.stringify({ kept, placed })).toBeLessThanOrEqual(resumeBound(placed, kept))
  })
})
