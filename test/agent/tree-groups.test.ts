import { describe, it, expect } from 'vitest'
import { GroupWriter } from '../../agent/tree/groups.ts'
import type { GroupFile } from '../../agent/tree/groups.ts'
import type { PutFilesOptions, WholeFile } from '../../protocols/index.ts'

/** Turns of the event loop until `cond` holds (the test's own timeout bounds it). */
async function until (cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise(resolve => setImmediate(resolve))
}

function group (dir: string, names: string[]): GroupFile[] {
  return names.map(n => ({
    entry: { path: `${dir}/${n}`, type: 'file', size: 1, mtime: 1, mode: 0o644 },
    file: { url: new URL(`file:///vol/copy/${dir}/${n}`), data: new Uint8Array(1) }
  }))
}

describe('GroupWriter: a group written while the one before it is synced', () => {
  it('starts the next group before the last returns, syncs it only after the last one\'s renames, and journals a group only after the next sync', async () => {
    const events: string[] = []
    const release = new Map<number, () => void>()
    let calls = 0
    const putFiles = async (files: WholeFile[], opts: PutFilesOptions): Promise<undefined[]> => {
      const n = calls++
      events.push(`put ${n}`)
      // As putWhole: the partials are written, then beforeSync, then this call's sync and renames.
      const dirs = opts.beforeSync === undefined ? [] : await opts.beforeSync()
      events.push(`sync ${n} ${[...(opts.syncDirectories ?? []), ...dirs].map(u => u.pathname).join(',')}`)
      await new Promise<void>(resolve => release.set(n, resolve))
      events.push(`returned ${n}`)
      return files.map(() => undefined)
    }
    const writer = new GroupWriter({
      putFiles,
      key: 'tr_groups',
      signal: new AbortController().signal,
      journal: async files => { events.push(`journal ${files.map(f => f.path).join(',')}`) },
      failed: path => { events.push(`failed ${path}`) },
      done: async e => { events.push(`done ${e.path}`) }
    })
    const first = writer.write(group('a', ['1', '2']))
    const second = writer.write(group('b', ['3']))
    await until(() => events.includes('put 1') && release.has(0))
    // The second group's partials are being written while the first is still out; its sync waits for the first's renames.
    expect(events.sort()).toEqual(['put 0', 'put 1', 'sync 0 '])
    release.get(0)?.()
    await until(() => events.includes('sync 1 /vol/copy/a/'))
    // Nothing journaled before the sync that makes the first group's renames durable has returned.
    expect(events.some(e => e.startsWith('journal'))).toBe(false)
    await until(() => release.has(1))
    release.get(1)?.()
    await Promise.all([first, second])
    expect(events.slice(events.indexOf('returned 1'))).toEqual(['returned 1', 'journal a/1,a/2', 'done a/1', 'done a/2'])
    // The last group's renames: made durable by finish's own sync, then journaled.
    const finished = writer.finish()
    await until(() => release.has(2))
    expect(events).toContain('sync 2 /vol/copy/b/')
    release.get(2)?.()
    await finished
    expect(events.slice(-3)).toEqual(['returned 2', 'journal b/3', 'done b/3'])
  })

  it('a group that fails before its sync leaves the group before it to the next sync', async () => {
    const synced: string[][] = []
    let calls = 0
    const journaled: string[] = []
    const writer = new GroupWriter({
      putFiles: async (files, opts) => {
        const n = calls++
        if (n === 1) throw new Error('no space for this group')
        const dirs = opts.beforeSync === undefined ? [] : await opts.beforeSync()
        synced.push(dirs.map(u => u.pathname))
        return files.map(() => undefined)
      },
      key: 'tr_groups',
      signal: new AbortController().signal,
      journal: async files => { journaled.push(...files.map(f => f.path)) },
      failed: () => {},
      done: async () => {}
    })
    await writer.write(group('a', ['1']))
    await expect(writer.write(group('b', ['2']))).rejects.toThrow('no space')
    expect(journaled).toEqual([])
    await writer.finish()
    expect(synced).toEqual([[], ['/vol/copy/a/']])
    expect(journaled).toEqual(['a/1'])
  })

  it('fails the group, journaling nothing, when the plug-in\'s putFiles returns without calling beforeSync', async () => {
    const journaled: string[] = []
    const writer = new GroupWriter({
      // A putFiles that knows nothing of beforeSync: it syncs only its own files, not the renames before them.
      putFiles: async files => files.map(() => undefined),
      key: 'tr_groups',
      signal: new AbortController().signal,
      journal: async files => { journaled.push(...files.map(f => f.path)) },
      failed: () => {},
      done: async () => {}
    })
    await expect(writer.write(group('a', ['1']))).rejects.toMatchObject({ code: 'internal' })
    await expect(writer.write(group('b', ['2']))).rejects.toMatchObject({ code: 'internal' })
    expect(journaled).toEqual([])
  })
})
