import { describe, it, expect, afterEach } from 'vitest'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { TestMesh } from '../helpers/mesh.ts'
import { Journal } from '../../agent/journal.ts'
import { GROUP_FILES } from '../../agent/tree/policy.ts'

const FILES = 1200
const SIZE = 4096
const DIRS = 4
const name = (i: number): string => join(`d${i % DIRS}`, `f${String(i).padStart(5, '0')}.bin`)

/**
 * Small files go whole and are written in groups with one file-system sync
 * (agent/tree/copy-tree.ts, protocols/file-group.ts). The receiving agent
 * killed in the middle of the tree: every file at its name then is whole and
 * right, and the next attempt sends only what was not in place.
 */
describe('a tree of small files, the receiving agent killed (SIGKILL) midway', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.stop(); mesh = undefined })

  it('shows no half-written file at a target name, resumes, and does not receive the files in place again', async () => {
    const m = await TestMesh.create()
    mesh = m
    await m.startCoordinator()
    // 4.8 MB at 1 MiB/s: about 5 s for the tree, so the kill lands inside it even on a loaded machine.
    await Promise.all([m.startAgent('store-1', ['--max-upload-rate', '1MiB']), m.startAgent('compute-1')])
    const src = join(m.volume('store-1'), 'tree')
    const bytes: Buffer[] = []
    for (let d = 0; d < DIRS; d++) await mkdir(join(src, `d${d}`), { recursive: true })
    for (let i = 0; i < FILES; i++) {
      bytes.push(randomBytes(SIZE))
      await writeFile(join(src, name(i)), bytes[i])
    }
    const t = await m.submit('agent://store-1/vol/tree/', 'agent://compute-1/vol/copy/')
    const dst = join(m.volume('compute-1'), 'copy')
    const placed = async (): Promise<number[]> => {
      const got: number[] = []
      for (let i = 0; i < FILES; i++) if (await readFile(join(dst, name(i))).then(() => true, () => false)) got.push(i)
      return got
    }
    await m.until(async () => (await readdir(join(dst, 'd0')).catch(() => [])).filter(n => !n.endsWith('.partial')).length >= 50, 60_000, 'some files in place')
    await m.kill('compute-1')
    const before = await placed()
    expect(before.length).toBeGreaterThan(0)
    expect(before.length).toBeLessThan(FILES)
    // Whatever the kill interrupted, a file at its name is the source's, whole.
    for (const i of before) expect((await readFile(join(dst, name(i)))).equals(bytes[i]), name(i)).toBe(true)

    await m.restartAgent('compute-1')
    const done = await m.waitForState(t.id, ['succeeded', 'failed'], 120_000)
    expect(done.state).toBe('succeeded')
    expect(done.attempt).toBeGreaterThanOrEqual(2)
    for (let i = 0; i < FILES; i++) expect((await readFile(join(dst, name(i)))).equals(bytes[i]), name(i)).toBe(true)
    for (let d = 0; d < DIRS; d++) expect((await readdir(join(dst, `d${d}`))).filter(n => n.endsWith('.partial'))).toEqual([])
    // The restarted agent received only the files that were not in place.
    const received = (await m.status('compute-1')).counters.bytesReceived
    expect(received).toBeLessThanOrEqual((FILES - before.length) * SIZE)
  })

  it('with sync none, the next attempt sends none of the files journaled finished (the sync check would copy them all)', async () => {
    const m = await TestMesh.create()
    mesh = m
    await m.startCoordinator()
    await Promise.all([m.startAgent('store-1', ['--max-upload-rate', '1MiB']), m.startAgent('compute-1')])
    const src = join(m.volume('store-1'), 'tree')
    const bytes: Buffer[] = []
    for (let d = 0; d < DIRS; d++) await mkdir(join(src, `d${d}`), { recursive: true })
    for (let i = 0; i < FILES; i++) {
      bytes.push(randomBytes(SIZE))
      await writeFile(join(src, name(i)), bytes[i])
    }
    const t = await m.submit('agent://store-1/vol/tree/', 'agent://compute-1/vol/copy/', { sync: 'none' })
    const dst = join(m.volume('compute-1'), 'copy')
    const placedCount = async (): Promise<number> => {
      let n = 0
      for (let d = 0; d < DIRS; d++) n += (await readdir(join(dst, `d${d}`)).catch(() => [])).filter(x => !x.endsWith('.partial')).length
      return n
    }
    // Past the middle, so that the files finished outnumber the two groups that may be at their names unjournaled.
    const KILL_AT = 700
    await m.until(async () => await placedCount() >= KILL_AT, 60_000, `${KILL_AT} files in place`)
    await m.kill('compute-1')
    const placed = await placedCount()
    expect(placed).toBeLessThan(FILES)

    // The dead agent's journal, read as the restarted agent will (LevelDB is free once its process is gone).
    const journal = await Journal.open(join(m.dir, 'agents', 'compute-1', 'journal'))
    const finished = (await journal.treeFilesDone(t.id, Array.from({ length: FILES }, (_, i) => name(i)))).flatMap((v, i) => v === undefined ? [] : [i])
    await journal.close()
    // Journaled only once durable at its name: each is there, whole; at most the two groups being written were not journaled yet.
    for (const i of finished) expect((await readFile(join(dst, name(i)))).equals(bytes[i]), name(i)).toBe(true)
    expect(finished.length).toBeGreaterThanOrEqual(placed - 2 * GROUP_FILES)

    await m.restartAgent('compute-1')
    const done = await m.waitForState(t.id, ['succeeded', 'failed'], 120_000) as { state: string, attempt: number, progress: { files?: { total: number, done: number, skipped: number, failed: number } } }
    expect(done.state).toBe('succeeded')
    expect(done.attempt).toBeGreaterThanOrEqual(2)
    // The files finished before count as done for the task: the record is of the whole tree.
    expect(done.progress.files).toEqual({ total: FILES, done: FILES, skipped: 0, failed: 0 })
    for (let i = 0; i < FILES; i++) expect((await readFile(join(dst, name(i)))).equals(bytes[i]), name(i)).toBe(true)
    // sync none copies every file it has not finished itself, and none it has.
    const received = (await m.status('compute-1')).counters.bytesReceived
    expect(received).toBeLessThanOrEqual((FILES - finished.length) * SIZE)
    // And so no more than the files not in place at the kill and the two groups that were not journaled yet.
    expect(received).toBeLessThanOrEqual((FILES - placed + 2 * GROUP_FILES) * SIZE)
  })
})
