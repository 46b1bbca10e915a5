import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { lstat, mkdir, mkdtemp, readlink, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseLocation } from '../../mesh/index.ts'
import type { ControlParams, Job, TreeEntry } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import { copyTree } from '../../agent/tree/copy-tree.ts'
import { treeCopyDeps } from './tree-fakes.ts'
import type { TreeSource } from '../../agent/tree/source.ts'

/**
 * The receiving end of links: copy with a holder that lies. A holder is a
 * peer; a link entry it sends is checked again before anything is made, so
 * one pointing out of the tree, or sent to a tree that did not ask for
 * links, fails that entry and makes nothing.
 */
describe('a tree\'s links at the receiver, from a holder that may lie', () => {
  let root: string
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-tree-links-'))
    await mkdir(join(root, 'dst'))
  })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  async function receive (entries: TreeEntry[], links?: 'copy'): Promise<{ files: unknown, rows: ControlParams<'treeFiles'>['files'] }> {
    const source: TreeSource = {
      async * list () { yield entries },
      read: async () => { throw new Error('no file is read: the tree holds only links') }
    }
    const rows: ControlParams<'treeFiles'>['files'] = []
    const deps = treeCopyDeps({ treeFiles: async p => { rows.push(...p.files) } })
    const job: Job = { transferId: 'tr_links', attempt: 1, source: 'agent://a/vol/tree/', destination: 'agent://b/vol/copy/', tree: links === undefined ? {} : { links } }
    const plugin = file({ volumes: [{ name: 'vol', root: join(root, 'dst'), readOnly: false }] })
    const r = await copyTree(deps, job, source, { plugin, url: new URL('file:///vol/copy/'), location: parseLocation('agent://b/vol/copy/', 'destination') }, new AbortController().signal)
    return { files: r.files, rows }
  }
  const link = (path: string, target: string): TreeEntry => ({ path, type: 'link', size: 0, mtime: 0, mode: 0o777, target })

  it('makes a link inside the tree; one out of it, or an absolute one, fails alone and makes nothing', async () => {
    const { files, rows } = await receive([link('ok', 'a/b'), link('up', '../../etc/passwd'), link('abs', '/etc/passwd')], 'copy')
    expect(files).toEqual({ total: 3, done: 1, skipped: 0, failed: 2 })
    expect(await readlink(join(root, 'dst', 'copy', 'ok'))).toBe('a/b')
    for (const name of ['up', 'abs']) {
      await expect(lstat(join(root, 'dst', 'copy', name))).rejects.toThrow()
      expect(rows.find(r => r.path === name)).toMatchObject({ state: 'failed', error: { code: 'protocol_error' } })
    }
  })

  it('makes no link for a tree that did not ask for links', async () => {
    const { files } = await receive([link('ok', 'a/b')])
    expect(files).toEqual({ total: 1, done: 0, skipped: 0, failed: 1 })
    await expect(lstat(join(root, 'dst', 'copy', 'ok'))).rejects.toThrow()
  })
})
