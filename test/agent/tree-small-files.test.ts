import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TREE_BATCH, parseLocation } from '../../mesh/index.ts'
import type { ControlParams, Job } from '../../mesh/index.ts'
import { file, syncfsCount } from '../../protocols/index.ts'
import type { ProtocolPlugin } from '../../protocols/index.ts'
import { newCounters } from '../../agent/counters.ts'
import { copyTree } from '../../agent/tree/copy-tree.ts'
import { treeCopyDeps } from './tree-fakes.ts'
import { localTreeSource } from '../../agent/tree/local.ts'
import type { TreeSource } from '../../agent/tree/source.ts'
import { GROUP_FILES, SMALL_FILE_BYTES } from '../../agent/tree/policy.ts'
import { MemJournal } from './copy/fakes.ts'

const SMALL = 300
const DAMAGED = 'd1/f0007.bin'

/**
 * The small-file path of a tree copy, between the real holder code and the
 * real file plug-in in two temporary volumes; the only thing not real is the
 * wire, replaced by the holder read in-process (localTreeSource), with one
 * byte of one file flipped on its way.
 */
describe('a tree of small files: written in groups, never a damaged file at its name', () => {
  let root: string
  let src: string
  let dst: string
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-tree-small-'))
    src = join(root, 'src')
    dst = join(root, 'dst')
    for (let i = 0; i < SMALL; i++) {
      await mkdir(join(src, 'tree', `d${i % 3}`), { recursive: true })
      await writeFile(join(src, 'tree', `d${i % 3}`, `f${String(i).padStart(4, '0')}.bin`), randomBytes(1000 + i))
    }
    // One file past the threshold: it goes through the writer, as before.
    await writeFile(join(src, 'tree', 'big.bin'), randomBytes(SMALL_FILE_BYTES + 1))
    await mkdir(dst)
  })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  it('writes the small files with a few putFiles calls, fails the damaged one alone, and leaves no partial', async () => {
    const srcVolumes = [{ name: 'vol', root: src, readOnly: false }]
    const holder = { volumes: file({ volumes: srcVolumes }), volumeList: srcVolumes, counters: newCounters() }
    const inner = localTreeSource(holder, 'a', 'agent://a/vol/tree/')
    const source: TreeSource = {
      list: inner.list,
      read: async (files, algorithm, handler, signal) => {
        await inner.read(files, algorithm, {
          ...handler,
          file: async (run, chunks) => {
            await handler.file(run, run.path !== DAMAGED ? chunks : (async function * () {
              for await (const c of chunks) { const bad = Uint8Array.from(c); bad[0] ^= 1; yield bad }
            })())
          },
          // Small files come packed: the damaged one's first byte flipped inside its pack.
          files: handler.files === undefined
            ? undefined
            : async (runs, bytes) => {
              const bad = Uint8Array.from(bytes)
              let at = 0
              for (const r of runs) {
                if (r.path === DAMAGED) bad[at] ^= 1
                at += r.size
              }
              await handler.files?.(runs, bad)
            }
        }, signal)
      }
    }
    const calls = { putFiles: 0, files: 0, write: 0 }
    const plain = file({ volumes: [{ name: 'vol', root: dst, readOnly: false }] })
    const plugin: ProtocolPlugin = {
      ...plain,
      write: async (url, opts) => { calls.write++; return await plain.write(url, opts) },
      putFiles: async (files, opts) => { calls.putFiles++; calls.files += files.length; return await plain.putFiles!(files, opts) }
    }
    const rows: ControlParams<'treeFiles'>['files'] = []
    const deps = treeCopyDeps({ treeFiles: async p => { rows.push(...p.files) } })
    const job: Job = { transferId: 'tr_small', attempt: 1, source: 'agent://a/vol/tree/', destination: 'agent://b/vol/copy/' }
    const r = await copyTree(deps, job, source, { plugin, url: new URL('file:///vol/copy/'), location: parseLocation('agent://b/vol/copy/', 'destination') }, new AbortController().signal)

    expect(r.files).toEqual({ total: SMALL + 1, done: SMALL, skipped: 0, failed: 1 })
    expect(r.firstError?.code).toBe('checksum_mismatch')
    expect(rows.find(x => x.path === DAMAGED)?.state).toBe('failed')
    expect(rows.filter(x => x.state === 'done')).toHaveLength(SMALL)
    // Every small file but the damaged one went through putFiles, in groups; the large one through the writer.
    expect({ files: calls.files, write: calls.write }).toEqual({ files: SMALL - 1, write: 1 })
    // A group at GROUP_FILES files and one at the end of each read batch (TREE_BATCH files).
    expect(calls.putFiles).toBeLessThanOrEqual(Math.ceil((SMALL - 1) / GROUP_FILES) + Math.ceil((SMALL + 1) / TREE_BATCH))
    expect(calls.putFiles).toBeGreaterThanOrEqual(Math.ceil((SMALL - 1) / GROUP_FILES))
    const names = (await readdir(join(dst, 'copy'), { recursive: true })).map(String)
    expect(names).not.toContain(DAMAGED)
    expect(names.filter(n => n.endsWith('.partial'))).toEqual([])
    for (const n of names.filter(n => n.endsWith('.bin'))) expect((await readFile(join(dst, 'copy', n))).equals(await readFile(join(src, 'tree', n)))).toBe(true)
  })

  it('one file-system sync per group: a group\'s renames are made durable by the next group\'s sync, and only then journaled', async () => {
    const srcVolumes = [{ name: 'vol', root: src, readOnly: false }]
    const holder = { volumes: file({ volumes: srcVolumes }), volumeList: srcVolumes, counters: newCounters() }
    const source = localTreeSource(holder, 'a', 'agent://a/vol/tree/')
    const plain = file({ volumes: [{ name: 'vol', root: dst, readOnly: false }] })
    // What happened, in order: each putFiles call (its files, the directories it was asked to make durable) and its return, each journal write.
    const log: Array<{ t: 'put', call: number, paths: string[], syncs: string[] } | { t: 'sync', call: number, syncs: string[] } | { t: 'returned', call: number } | { t: 'journal', paths: string[] }> = []
    const rel = (u: URL): string => decodeURIComponent(u.pathname).replace('/vol/copy/', '')
    let calls = 0
    const plugin: ProtocolPlugin = {
      ...plain,
      putFiles: async (files, opts) => {
        const call = calls++
        log.push({ t: 'put', call, paths: files.map(f => rel(f.url)), syncs: (opts.syncDirectories ?? []).map(rel) })
        // Directories given once the partials are written (the group before may still be renaming): synced by this call too.
        const beforeSync = opts.beforeSync
        const r = await plain.putFiles!(files, beforeSync === undefined ? opts : { ...opts, beforeSync: async () => {
          const dirs = await beforeSync()
          log.push({ t: 'sync', call, syncs: dirs.map(rel) })
          return dirs
        } })
        log.push({ t: 'returned', call })
        return r
      }
    }
    const journal = new MemJournal()
    const putTreeFiles = journal.putTreeFiles.bind(journal)
    journal.putTreeFiles = async (id, files) => { log.push({ t: 'journal', paths: files.map(f => f.path) }); await putTreeFiles(id, files) }
    const deps = treeCopyDeps({ journal })
    const job: Job = { transferId: 'tr_order', attempt: 1, source: 'agent://a/vol/tree/', destination: 'agent://b/vol/copy/', tree: { sync: 'none' } }
    const syncsBefore = syncfsCount()
    const r = await copyTree(deps, job, source, { plugin, url: new URL('file:///vol/copy/'), location: parseLocation('agent://b/vol/copy/', 'destination') }, new AbortController().signal)
    expect(r.files).toEqual({ total: SMALL + 1, done: SMALL + 1, skipped: 0, failed: 0 })
    const groups = log.filter(e => e.t === 'put' && e.paths.length > 0).length
    expect(groups).toBeGreaterThanOrEqual(2)
    // One sync per group (all three directories are on one file system) and one for the last group's renames: two per group before.
    expect(syncfsCount() - syncsBefore).toBeLessThanOrEqual(groups + 1)

    // Every small file journaled finished was written by a call that returned, and then a later call made its directory durable before the journal write.
    const journaled = new Set<string>()
    for (const [at, e] of log.entries()) {
      if (e.t !== 'journal') continue
      for (const path of e.paths) {
        if (path === 'big.bin') continue
        journaled.add(path)
        const dir = path.slice(0, path.lastIndexOf('/') + 1)
        const written = log.findIndex(x => x.t === 'put' && x.paths.includes(path))
        const writtenReturned = log.findIndex((x, i) => i > written && x.t === 'returned' && x.call === (log[written] as { call: number }).call)
        const synced = log.findIndex((x, i) => i > writtenReturned && (x.t === 'put' || x.t === 'sync') && x.syncs.includes(dir))
        const syncedReturned = log.findIndex((x, i) => i > synced && x.t === 'returned' && x.call === (log[synced] as { call: number }).call)
        expect({ path, written: written >= 0, synced: synced > writtenReturned, beforeJournal: syncedReturned >= 0 && syncedReturned < at }).toEqual({ path, written: true, synced: true, beforeJournal: true })
      }
    }
    expect(journaled.size).toBe(SMALL)
  })

  it('stats no destination file in a directory the attempt created, and every one in a directory that was there', async () => {
    const srcVolumes = [{ name: 'vol', root: src, readOnly: false }]
    const holder = { volumes: file({ volumes: srcVolumes }), volumeList: srcVolumes, counters: newCounters() }
    const source = localTreeSource(holder, 'a', 'agent://a/vol/tree/')
    const plain = file({ volumes: [{ name: 'vol', root: dst, readOnly: false }] })
    let stated = 0
    const plugin: ProtocolPlugin = {
      ...plain,
      stat: async (url, opts) => { stated++; return await plain.stat(url, opts) },
      statMany: async (urls, opts) => { stated += urls.length; return await plain.statMany!(urls, opts) }
    }
    const deps = treeCopyDeps()
    const dstRef = { plugin, url: new URL('file:///vol/copy/'), location: parseLocation('agent://b/vol/copy/', 'destination') }
    const job = (id: string): Job => ({ transferId: id, attempt: 1, source: 'agent://a/vol/tree/', destination: 'agent://b/vol/copy/' })
    const first = await copyTree(deps, job('tr_fresh'), source, dstRef, new AbortController().signal)
    expect(first.files).toEqual({ total: SMALL + 1, done: SMALL + 1, skipped: 0, failed: 0 })
    expect(stated).toBe(0)
    // The same tree again into the directory now there: each file compared (sync mtime, the default) and skipped.
    const second = await copyTree(deps, job('tr_again'), source, dstRef, new AbortController().signal)
    expect(second.files).toEqual({ total: SMALL + 1, done: 0, skipped: SMALL + 1, failed: 0 })
    expect(stated).toBe(SMALL + 1)
  })

  it('a next attempt with sync none sends none of the files the journal holds as finished, and copies a file changed since', async () => {
    const srcVolumes = [{ name: 'vol', root: src, readOnly: false }]
    const holder = { volumes: file({ volumes: srcVolumes }), volumeList: srcVolumes, counters: newCounters() }
    const source = localTreeSource(holder, 'a', 'agent://a/vol/tree/')
    const plugin = file({ volumes: [{ name: 'vol', root: dst, readOnly: false }] })
    const journal = new MemJournal()
    const counters = newCounters()
    const rows: ControlParams<'treeFiles'>['files'] = []
    const deps = treeCopyDeps({ journal, counters, treeFiles: async p => { rows.push(...p.files) } })
    const dstRef = { plugin, url: new URL('file:///vol/copy/'), location: parseLocation('agent://b/vol/copy/', 'destination') }
    const job = (attempt: number): Job => ({ transferId: 'tr_resume', attempt, source: 'agent://a/vol/tree/', destination: 'agent://b/vol/copy/', tree: { sync: 'none' } })
    const first = await copyTree(deps, job(1), source, dstRef, new AbortController().signal)
    expect(first.files).toEqual({ total: SMALL + 1, done: SMALL + 1, skipped: 0, failed: 0 })
    // Every file, small (a group at a time) and large (after its directory's sync), journaled finished.
    expect(journal.treeFiles.size).toBe(SMALL + 1)
    const received = counters.bytesReceived

    // As after a crash before the outcome reached the coordinator: the entry and its files are still journaled.
    const changed = join(src, 'tree', 'd0', 'f0000.bin')
    await writeFile(changed, randomBytes(50))
    rows.length = 0
    const second = await copyTree(deps, job(2), source, dstRef, new AbortController().signal)
    expect(second.files).toEqual({ total: SMALL + 1, done: SMALL + 1, skipped: 0, failed: 0 })
    expect(counters.bytesReceived - received).toBe(50)
    expect(rows.filter(x => x.state === 'done')).toHaveLength(SMALL + 1)
    expect((await readFile(join(dst, 'copy', 'd0', 'f0000.bin'))).equals(await readFile(changed))).toBe(true)
  })
})
