import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TREE_READ_FILES, parseLocation } from '../../mesh/index.ts'
import type { Job, MeshNode } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import { newCounters } from '../../agent/counters.ts'
import { copyTree } from '../../agent/tree/copy-tree.ts'
import type { TreeCopyDeps } from '../../agent/tree/copy-tree.ts'
import { localTreeSource } from '../../agent/tree/local.ts'
import type { TreeSource } from '../../agent/tree/source.ts'
import { readAhead } from '../../agent/tree/policy.ts'
import { FakeClock, MemJournal } from './copy/fakes.ts'

/** Files of the tree: two read batches (TREE_READ_FILES files each at most). */
const FILES = TREE_READ_FILES + 40

/**
 * The next read batch is asked for while the one before is still received,
 * and its files are handled only once that one's have all come: the real
 * holder code and file plug-in in two temporary volumes, the wire replaced
 * by the holder read in-process (localTreeSource).
 */
describe('a tree copy asks for its next read batch ahead', () => {
  let root: string
  let src: string
  let dst: string
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-tree-ahead-'))
    src = join(root, 'src')
    dst = join(root, 'dst')
    await mkdir(join(src, 'tree'), { recursive: true })
    for (let i = 0; i < FILES; i++) await writeFile(join(src, 'tree', `f${String(i).padStart(5, '0')}`), `file ${i}`)
    await mkdir(dst)
  })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  it('without a download limit: the second batch is asked for before the first ends, its files handled after', async () => {
    const srcVolumes = [{ name: 'vol', root: src, readOnly: false }]
    const holder = { volumes: file({ volumes: srcVolumes }), volumeList: srcVolumes, counters: newCounters() }
    const inner = localTreeSource(holder, 'a', 'agent://a/vol/tree/')
    const events: string[] = []
    let asked = 0
    let secondAsked = (): void => {}
    const second = new Promise<void>(resolve => { secondAsked = resolve })
    const source: TreeSource = {
      list: inner.list,
      read: async (files, algorithm, handler, signal) => {
        const n = asked++
        events.push(`read ${n}`)
        if (n === 1) secondAsked()
        // The first batch gives nothing until the second is asked for: the old order (ask once received) never ends.
        if (n === 0) await second
        await inner.read(files, algorithm, {
          ...handler,
          files: handler.files === undefined ? undefined : async (runs, bytes) => { events.push(`files ${n}`); await handler.files?.(runs, bytes) }
        }, signal)
        events.push(`ended ${n}`)
      }
    }
    const deps: TreeCopyDeps = {
      node: undefined as unknown as MeshNode, journal: new MemJournal(), counters: newCounters(), clock: new FakeClock(), log: () => {},
      syncEveryBytes: 1 << 20, syncEveryMs: 1000, progressEveryMs: 1000, progress: () => {}, treeFiles: async () => {}
    }
    const job: Job = { transferId: 'tr_ahead', attempt: 1, source: 'agent://a/vol/tree/', destination: 'agent://b/vol/copy/', tree: { sync: 'none' } }
    const r = await copyTree(deps, job, source, { plugin: file({ volumes: [{ name: 'vol', root: dst, readOnly: false }] }), url: new URL('file:///vol/copy/'), location: parseLocation('agent://b/vol/copy/', 'destination') }, new AbortController().signal)
    expect(r.files).toEqual({ total: FILES, done: FILES, skipped: 0, failed: 0 })
    expect(asked).toBe(2)
    // Asked for while the first was out; none of its files handled before the first batch's last.
    expect(events.indexOf('read 1')).toBeLessThan(events.indexOf('ended 0'))
    expect(events.indexOf('files 1')).toBeGreaterThan(events.lastIndexOf('files 0'))
    expect((await readdir(join(dst, 'copy'))).length).toBe(FILES)
  })

  it('under a download limit the next batch is asked for only once the one before is received', () => {
    expect(readAhead(false)).toBe(true)
    expect(readAhead(true)).toBe(false)
  })
})
