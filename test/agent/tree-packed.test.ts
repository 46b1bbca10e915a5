import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TreeMessage } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import { newCounters } from '../../agent/counters.ts'
import { readMessages } from '../../agent/tree/holder.ts'
import { SMALL_FILE_BYTES } from '../../agent/tree/policy.ts'

const SMALL = 150
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/**
 * The holder's read batch as it goes on the wire, from the real file plug-in:
 * asked `packed`, small whole files come many to a `files` message followed
 * by their bytes, each with its digest; a file that cannot be sent is a
 * `file-error` of its own, and a large file is still a `file` of its own.
 */
describe('a read batch of small files, packed', () => {
  let root: string
  const files: Array<{ path: string, offset: number, expect: { size: number, mtime: number } }> = []
  const contents = new Map<string, Buffer>()
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-tree-packed-'))
    await mkdir(join(root, 'tree', 'd'), { recursive: true })
    const write = async (path: string, data: Buffer): Promise<void> => {
      await writeFile(join(root, 'tree', path), data)
      contents.set(path, data)
      const st = await stat(join(root, 'tree', path))
      files.push({ path, offset: 0, expect: { size: st.size, mtime: Math.floor(st.mtimeMs) } })
    }
    for (let i = 0; i < SMALL; i++) await write(`d/f${String(i).padStart(4, '0')}.bin`, randomBytes(500 + i))
    await write('d/empty.bin', Buffer.alloc(0))
    await write('d/big.bin', randomBytes(SMALL_FILE_BYTES + 1))
    await write('d/last.bin', randomBytes(100))
    // Listed at one size, now at another: reported alone, as changed.
    files[10] = { ...files[10], expect: { ...files[10].expect, size: files[10].expect.size + 1 } }
  })
  afterAll(async () => { await rm(root, { recursive: true, force: true }) })

  const read = async (packed: boolean): Promise<Array<TreeMessage | Uint8Array>> => {
    const volumes = [{ name: 'vol', root, readOnly: false }]
    const holder = { volumes: file({ volumes }), volumeList: volumes, counters: newCounters() }
    const out: Array<TreeMessage | Uint8Array> = []
    for await (const m of readMessages(holder, new URL('file:///vol/tree/'), { source: 'agent://a/vol/tree/', files, algorithm: 'sha256', packed })) out.push(m)
    return out
  }

  it('sends each small file once, in packs with its digest, its bytes after its pack; the changed and the large ones alone', async () => {
    const out = await read(true)
    const seen = new Map<string, Uint8Array>()
    const packs: number[] = []
    for (let k = 0; k < out.length; k++) {
      const m = out[k]
      if (m instanceof Uint8Array || m.t !== 'files') continue
      packs.push(m.files.length)
      // Empty files alone have no bytes after them.
      const bytes = m.length === 0 ? new Uint8Array(0) : out[k + 1] as Uint8Array
      expect(bytes.byteLength).toBe(m.length)
      let at = 0
      for (const r of m.files) {
        const data = bytes.subarray(at, at + r.size)
        at += r.size
        expect(r.sha256).toBe(sha256(data))
        seen.set(r.path, data)
      }
    }
    // Every small file but the changed one, in a few messages, not three each.
    expect([...seen.keys()].sort()).toEqual(files.map(f => f.path).filter(p => p !== files[10].path && p !== 'd/big.bin').sort())
    for (const [path, data] of seen) expect(Buffer.from(data).equals(contents.get(path) as Buffer)).toBe(true)
    expect(packs.length).toBeLessThanOrEqual(5)
    const messages = out.filter((m): m is TreeMessage => !(m instanceof Uint8Array))
    expect(messages.filter(m => m.t === 'file-error').map(m => m.t === 'file-error' ? [m.path, m.error.code] : [])).toEqual([[files[10].path, 'source_changed']])
    expect(messages.filter(m => m.t === 'file').map(m => m.t === 'file' ? m.path : '')).toEqual(['d/big.bin'])
    // The order of the batch is kept: the large file between the packs before it and the one after it.
    const bigAt = messages.findIndex(m => m.t === 'file')
    expect(messages.slice(bigAt + 1).some(m => m.t === 'files' && m.files.some(r => r.path === 'd/last.bin'))).toBe(true)
  })

  it('without `packed` (an older reader), one file at a time as before', async () => {
    const out = await read(false)
    const messages = out.filter((m): m is TreeMessage => !(m instanceof Uint8Array))
    expect(messages.some(m => m.t === 'files')).toBe(false)
    expect(messages.filter(m => m.t === 'file-end')).toHaveLength(files.length - 1)
    expect(Buffer.concat(out.filter((m): m is Uint8Array => m instanceof Uint8Array)).equals(Buffer.concat(files.filter((_f, i) => i !== 10).map(f => contents.get(f.path) as Buffer)))).toBe(true)
    expect(await readFile(join(root, 'tree', 'd/last.bin'))).toEqual(contents.get('d/last.bin'))
  })
})
