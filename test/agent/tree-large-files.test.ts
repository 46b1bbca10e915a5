import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NetworkError, parseLocation } from '../../mesh/index.ts'
import type { Job } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import type { ProtocolPlugin, Writer } from '../../protocols/index.ts'
import { newCounters } from '../../agent/counters.ts'
import { copyTree } from '../../agent/tree/copy-tree.ts'
import { treeCopyDeps } from './tree-fakes.ts'
import type { TreeCopyDeps } from '../../agent/tree/copy-tree.ts'
import { localTreeSource } from '../../agent/tree/local.ts'
import type { ReadList, TreeSource } from '../../agent/tree/source.ts'
import { FINISHED_JOURNAL_BYTES, LARGE_FILE_BYTES } from '../../agent/tree/policy.ts'
import { MemJournal } from './copy/fakes.ts'

const MiB = 1024 * 1024
// Five files of 16 MiB: together past the 64 MiB a read batch held before large files had batches of their own.
const LARGE = ['l0.bin', 'l1.bin', 'l2.bin', 'l3.bin', 'l4.bin']
const SIZE = 16 * MiB
const SMALL = ['s0.txt', 's1.txt', 's2.txt']

/** A file's chunks as a connection cut after `n` of them delivers them. */
async function * resetAfter (chunks: AsyncIterable<Uint8Array>, n: number): AsyncGenerator<Uint8Array> {
  let i = 0
  for await (const c of chunks) {
    if (i++ === n) throw new NetworkError('connection reset (test)')
    yield c
  }
}

/**
 * Large files of a tree, between the real holder code and the real file
 * plug-in in two temporary volumes (the wire replaced by the holder read
 * in-process, localTreeSource): they come in one read batch of their own,
 * not one request per file; and the files finished are journaled as they
 * go, so that a batch cut short by the network leaves them finished for the
 * next attempt, which sends only the rest of the partial one.
 */
describe('a tree of large files: one read batch for many, finished files journaled as they go', () => {
  let root: string
  let src: string
  let dst: string
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-tree-large-'))
    src = join(root, 'src')
    dst = join(root, 'dst')
    await mkdir(join(src, 'tree'), { recursive: true })
    for (const name of LARGE) await writeFile(join(src, 'tree', name), randomBytes(SIZE))
    for (const name of SMALL) await writeFile(join(src, 'tree', name), name)
    await mkdir(dst)
  })
  afterAll(async () => { await rm(root, { recursive: true, force: true }) })

  // One stream of large files unless a test says: the tests of one lane's order (the lanes' own tests are below).
  function setup (name: string, wrap: (p: ProtocolPlugin) => ProtocolPlugin = p => p, syncEveryBytes = MiB, treeStreams = 1): { inner: TreeSource, deps: TreeCopyDeps, journal: MemJournal, counters: ReturnType<typeof newCounters>, dstRef: Parameters<typeof copyTree>[3] } {
    const srcVolumes = [{ name: 'vol', root: src, readOnly: false }]
    const holder = { volumes: file({ volumes: srcVolumes }), volumeList: srcVolumes, counters: newCounters() }
    const inner = localTreeSource(holder, 'a', 'agent://a/vol/tree/')
    const journal = new MemJournal()
    const counters = newCounters()
    const deps = treeCopyDeps({ journal, counters, syncEveryBytes, treeStreams })
    const plugin = wrap(file({ volumes: [{ name: 'vol', root: dst, readOnly: false }] }))
    const dstRef = { plugin, url: new URL(`file:///vol/${name}/`), location: parseLocation(`agent://b/vol/${name}/`, 'destination') }
    return { inner, deps, journal, counters, dstRef }
  }

  const job = (id: string, attempt: number): Job => ({ transferId: id, attempt, source: 'agent://a/vol/tree/', destination: 'agent://b/vol/copy/', tree: { sync: 'none' } })

  it('sends every large file in one read batch, apart from the small ones', async () => {
    const { inner, deps, dstRef } = setup('one')
    const batches: ReadList[] = []
    const source: TreeSource = { list: inner.list, read: async (files, ...rest) => { batches.push(files); await inner.read(files, ...rest) } }
    const r = await copyTree(deps, job('tr_one', 1), source, dstRef, new AbortController().signal)
    expect(r.files).toEqual({ total: LARGE.length + SMALL.length, done: LARGE.length + SMALL.length, skipped: 0, failed: 0 })
    const large = batches.filter(b => b.some(f => f.expect.size >= LARGE_FILE_BYTES))
    expect(large.map(b => b.map(f => f.path).sort())).toEqual([LARGE])
    for (const name of [...LARGE, ...SMALL]) expect((await readFile(join(dst, 'one', name))).equals(await readFile(join(src, 'tree', name)))).toBe(true)
    expect((await readdir(join(dst, 'one'))).filter(n => n.endsWith('.partial'))).toEqual([])
  })

  it('a batch cut inside its last file: the files before it are journaled finished, and the next attempt sends only the rest of that one', async () => {
    expect(LARGE.length - 1).toBeGreaterThanOrEqual(FINISHED_JOURNAL_BYTES / SIZE)
    const { inner, deps, journal, counters, dstRef } = setup('cut')
    let started = 0
    // The network fails 4 MiB into the fifth large file (chunks of 1 MiB): the batch and the attempt end there.
    const cut: TreeSource = {
      list: inner.list,
      read: async (files, algorithm, handler, signal) => {
        await inner.read(files, algorithm, {
          ...handler,
          file: async (run, chunks) => {
            if (run.size < LARGE_FILE_BYTES || ++started < LARGE.length) { await handler.file(run, chunks); return }
            await handler.file(run, resetAfter(chunks, 4))
          }
        }, signal)
      }
    }
    await expect(copyTree(deps, job('tr_cut', 1), cut, dstRef, new AbortController().signal)).rejects.toThrow(/connection reset/)
    const finished = [...journal.treeFiles.keys()].map(k => k.split('\u0000')[1]).filter(p => p.endsWith('.bin'))
    expect(finished).toHaveLength(LARGE.length - 1)
    const parts = journal.entries.get('tr_cut')?.treeParts ?? []
    expect(parts).toHaveLength(1)
    const partial = parts[0]
    expect(partial?.durableOffset).toBeGreaterThan(0)
    // Nothing but the finished files at their names.
    expect((await readdir(join(dst, 'cut'))).filter(n => LARGE.includes(n)).sort()).toEqual(finished.sort())

    const before = counters.bytesReceived
    const again = await copyTree(deps, job('tr_cut', 2), inner, dstRef, new AbortController().signal)
    expect(again.files.done).toBe(LARGE.length + SMALL.length)
    // sync none: only the journal keeps the finished files from being sent again.
    expect(counters.bytesReceived - before).toBe(SIZE - (partial?.durableOffset ?? 0))
    for (const name of LARGE) expect((await readFile(join(dst, 'cut', name))).equals(await readFile(join(src, 'tree', name)))).toBe(true)
    expect((await readdir(join(dst, 'cut'))).filter(n => n.endsWith('.partial'))).toEqual([])
  })

  it('the next file\'s bytes flow while the sync of the one before runs, and its offsets are journaled, not the file being committed', async () => {
    // Whether a file's last sync was let go by the next file's bytes, or by the bound that keeps a failing run from hanging.
    const released: Array<'next file' | 'bound'> = []
    let started = 0
    /** The files in the order their bytes came (the listing's, which is the directory's). */
    const order: string[] = []
    let wrote: () => void = () => {}
    const nextWrite = (): Promise<void> => new Promise(resolve => { wrote = resolve })
    const wrap = (plain: ProtocolPlugin): ProtocolPlugin => ({
      ...plain,
      write: async (url, opts) => {
        const w = await plain.write(url, opts)
        let first = true
        const writer: Writer = {
          write: async chunk => {
            if (first) { first = false; started++; order.push(url.pathname.split('/').pop() as string); wrote() }
            await w.write(chunk)
          },
          sync: async () => {
            if (started < LARGE.length) {
              let bound: NodeJS.Timeout | undefined
              released.push(await Promise.race([
                nextWrite().then(() => 'next file' as const),
                new Promise<'bound'>(resolve => { bound = setTimeout(() => { resolve('bound') }, 3000) })
              ]))
              clearTimeout(bound)
            }
            return await w.sync()
          },
          commit: async () => { await w.commit() },
          abort: async o => { await w.abort(o) },
          readPartial: w.readPartial?.bind(w)
        }
        return writer
      }
    })
    // One sync a file, started by its last chunk.
    const { inner, deps, journal, dstRef } = setup('overlap', wrap, SIZE)
    const offsets: Array<string | undefined> = []
    const put = journal.put.bind(journal)
    journal.put = async e => { offsets.push(...(e.treeParts ?? []).map(p => p.path)); await put(e) }
    const r = await copyTree(deps, job('tr_overlap', 1), { list: inner.list, read: inner.read }, dstRef, new AbortController().signal)
    expect(r.files.done).toBe(LARGE.length + SMALL.length)
    expect(released).toEqual(LARGE.slice(1).map(() => 'next file'))
    // A sync that ended once the next file's bytes flowed journaled nothing: the only partial journaled is the last file.
    expect([...order].sort()).toEqual(LARGE)
    expect(offsets.filter(p => p !== undefined)).toEqual([order[order.length - 1]])
    for (const name of LARGE) expect((await readFile(join(dst, 'overlap', name))).equals(await readFile(join(src, 'tree', name)))).toBe(true)
  })
  it('two streams: the large files in two read batches of about equal bytes, two files written at once', async () => {
    const { inner, deps, dstRef } = setup('lanes', p => p, MiB, 2)
    const batches: ReadList[] = []
    let writing = 0
    let most = 0
    const source: TreeSource = {
      list: inner.list,
      read: async (files, algorithm, handler, signal) => {
        batches.push(files)
        await inner.read(files, algorithm, {
          ...handler,
          file: async (run, chunks) => {
            writing++
            most = Math.max(most, writing)
            try { await handler.file(run, chunks) } finally { writing-- }
          }
        }, signal)
      }
    }
    const r = await copyTree(deps, job('tr_lanes', 1), source, dstRef, new AbortController().signal)
    expect(r.files).toEqual({ total: LARGE.length + SMALL.length, done: LARGE.length + SMALL.length, skipped: 0, failed: 0 })
    const large = batches.filter(b => b.some(f => f.expect.size >= LARGE_FILE_BYTES))
    expect(large.map(b => b.length).sort()).toEqual([2, 3])
    expect(large.flatMap(b => b.map(f => f.path)).sort()).toEqual(LARGE)
    expect(most).toBe(2)
    for (const name of [...LARGE, ...SMALL]) expect((await readFile(join(dst, 'lanes', name))).equals(await readFile(join(src, 'tree', name)))).toBe(true)
    expect((await readdir(join(dst, 'lanes'))).filter(n => n.endsWith('.partial'))).toEqual([])
  })

  it('two streams, one cut inside a file: the other lane\'s files finish and are journaled, and the next attempt sends only the rest of the cut one', async () => {
    const { inner, deps, journal, counters, dstRef } = setup('lanecut', p => p, MiB, 2)
    let cutting = true
    // The lane whose read batch starts second fails 4 MiB into its second file; the first lane goes on to its end.
    let reads = 0
    const cut: TreeSource = {
      list: inner.list,
      read: async (files, algorithm, handler, signal) => {
        const lane = files.some(f => f.expect.size >= LARGE_FILE_BYTES) ? ++reads : 0
        let started = 0
        await inner.read(files, algorithm, {
          ...handler,
          file: async (run, chunks) => {
            if (!cutting || lane !== 2 || ++started < 2) { await handler.file(run, chunks); return }
            await handler.file(run, resetAfter(chunks, 4))
          }
        }, signal)
      }
    }
    await expect(copyTree(deps, job('tr_lanecut', 1), cut, dstRef, new AbortController().signal)).rejects.toThrow(/connection reset/)
    cutting = false
    const finished = [...journal.treeFiles.keys()].map(k => k.split('\u0000')[1]).filter(p => p.endsWith('.bin'))
    // Three files on the lane that was not cut, the first file of the cut one.
    expect(finished).toHaveLength(LARGE.length - 1)
    const parts = journal.entries.get('tr_lanecut')?.treeParts ?? []
    expect(parts).toHaveLength(1)
    expect(parts[0].durableOffset).toBeGreaterThan(0)
    expect(finished).not.toContain(parts[0].path)
    expect((await readdir(join(dst, 'lanecut'))).filter(n => LARGE.includes(n)).sort()).toEqual(finished.sort())

    const before = counters.bytesReceived
    const again = await copyTree(deps, job('tr_lanecut', 2), inner, dstRef, new AbortController().signal)
    expect(again.files.done).toBe(LARGE.length + SMALL.length)
    expect(counters.bytesReceived - before).toBe(SIZE - parts[0].durableOffset)
    for (const name of LARGE) expect((await readFile(join(dst, 'lanecut', name))).equals(await readFile(join(src, 'tree', name)))).toBe(true)
    expect((await readdir(join(dst, 'lanecut'))).filter(n => n.endsWith('.partial'))).toEqual([])
  })
})
