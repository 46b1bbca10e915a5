import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Blake3Hasher } from '@napi-rs/blake-hash'
import { SourceChangedError } from '../../mesh/index.ts'
import type { TreeMessage } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import { newCounters } from '../../agent/counters.ts'
import { readMessages } from '../../agent/tree/holder.ts'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const blake3 = (b: Uint8Array): string => new Blake3Hasher().update(Buffer.from(b)).digest('hex')

/**
 * The holder's packs read in the read thread (protocols/read-io.ts): through
 * the real holder and file plug-in, each file's bytes and digest right, and
 * each file that cannot be sent reported alone, as on the event loop before.
 */
describe('a holder\'s packs, read in the read thread', () => {
  let root: string
  const files: Array<{ path: string, offset: number, expect: { size: number, mtime: number } }> = []
  const contents = new Map<string, Buffer>()
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-pack-thread-'))
    await mkdir(join(root, 'tree', 'd', 'sub'), { recursive: true })
    await writeFile(join(root, 'outside.txt'), 'not in the tree')
    const listed = async (path: string): Promise<void> => {
      const st = await stat(join(root, 'tree', path))
      files.push({ path, offset: 0, expect: { size: st.size, mtime: Math.floor(st.mtimeMs) } })
    }
    const write = async (path: string, data: Buffer): Promise<void> => {
      await writeFile(join(root, 'tree', path), data)
      contents.set(path, data)
      await listed(path)
    }
    for (let i = 0; i < 40; i++) await write(`d/f${String(i).padStart(3, '0')}.bin`, randomBytes(300 + i))
    // A link to a file of the tree is followed (its target's bytes); one out of the tree is refused.
    await symlink('f000.bin', join(root, 'tree', 'd', 'link-in.bin'))
    contents.set('d/link-in.bin', contents.get('d/f000.bin') as Buffer)
    await listed('d/link-in.bin')
    await symlink('../../outside.txt', join(root, 'tree', 'd', 'link-out.txt'))
    await listed('d/link-out.txt')
    // Listed, then gone; listed at one size, now another; a directory where a file was listed.
    await write('d/vanished.bin', randomBytes(10))
    await unlink(join(root, 'tree', 'd', 'vanished.bin'))
    await write('d/changed.bin', randomBytes(20))
    await writeFile(join(root, 'tree', 'd', 'changed.bin'), randomBytes(21))
    files.push({ path: 'd/sub', offset: 0, expect: { size: 0, mtime: 0 } })
    for (let i = 40; i < 100; i++) await write(`d/f${String(i).padStart(3, '0')}.bin`, randomBytes(i % 7 === 0 ? 0 : 200 + i))
  })
  afterAll(async () => { await rm(root, { recursive: true, force: true }) })

  const volumes = (): Array<{ name: string, root: string, readOnly: boolean }> => [{ name: 'vol', root, readOnly: false }]

  for (const algorithm of ['sha256', 'blake3'] as const) {
    it(`sends every readable file's bytes with its ${algorithm} digest; each other one is a file-error of its own`, async () => {
      const holder = { volumes: file({ volumes: volumes() }), volumeList: volumes(), counters: newCounters() }
      const out: Array<TreeMessage | Uint8Array> = []
      for await (const m of readMessages(holder, new URL('file:///vol/tree/'), { source: 'agent://a/vol/tree/', files, algorithm, packed: true })) out.push(m)
      const digest = algorithm === 'sha256' ? sha256 : blake3
      const seen = new Map<string, Buffer>()
      for (let k = 0; k < out.length; k++) {
        const m = out[k]
        if (m instanceof Uint8Array || m.t !== 'files') continue
        const bytes = m.length === 0 ? new Uint8Array(0) : out[k + 1] as Uint8Array
        expect(bytes.byteLength).toBe(m.length)
        let at = 0
        for (const r of m.files) {
          const data = Buffer.from(bytes.subarray(at, at + r.size))
          at += r.size
          expect(r[algorithm]).toBe(digest(data))
          seen.set(r.path, data)
        }
      }
      expect([...seen.keys()].sort()).toEqual([...contents.keys()].filter(p => p !== 'd/vanished.bin' && p !== 'd/changed.bin').sort())
      for (const [path, data] of seen) expect(data.equals(contents.get(path) as Buffer)).toBe(true)
      const errors = new Map(out.flatMap(m => !(m instanceof Uint8Array) && m.t === 'file-error' ? [[m.path, m]] : []))
      expect(new Map([...errors].map(([p, m]) => [p, m.error.code]))).toEqual(new Map([
        ['d/link-out.txt', 'permission_denied'], ['d/vanished.bin', 'not_found'], ['d/changed.bin', 'source_changed'], ['d/sub', 'is_a_directory']
      ]))
      // The changed file's error says what it is now, for the reader to list it again.
      expect(errors.get('d/changed.bin')?.now).toMatchObject({ size: 21 })
    })
  }

  it('refuses a file growing while it is read, never sending a splice', async () => {
    const growing = join(root, 'growing.txt')
    await writeFile(growing, 'x')
    const plugin = file({ volumes: volumes() })
    // A shell appending to the file as fast as it can, beside the reads; killed at the end.
    const appender = spawn('sh', ['-c', `while :; do printf x >> '${growing}'; done`], { stdio: 'ignore' })
    try {
      // Attempts before the shell runs could see no change (CI under load: the shell started after 200 of them had).
      // Bounded: the condition, not a time, ends the wait.
      for (let i = 0; i < 6000 && (await stat(growing)).size <= 1; i++) await new Promise(resolve => setTimeout(resolve, 10))
      expect((await stat(growing)).size).toBeGreaterThan(1)
      // The growing file first, then 63 others: their opens lie between its first look and its read.
      const others = [...contents.keys()].filter(p => p.startsWith('d/f')).slice(0, 63).map(p => ({ url: new URL(`file:///vol/tree/${p}`) }))
      let changed = 0
      for (let attempt = 0; attempt < 2000 && changed === 0; attempt++) {
        const [r] = await plugin.readFiles!([{ url: new URL('file:///vol/growing.txt') }, ...others])
        if ('error' in r) {
          expect(r.error).toBeInstanceOf(SourceChangedError)
          changed++
        } else {
          // What was sent is one version, whole: its size as stated and nothing but what was appended.
          expect(r.data.byteLength).toBe(r.version.size)
          expect(Buffer.from(r.data).toString()).toBe('x'.repeat(r.version.size))
        }
      }
      expect(changed).toBeGreaterThan(0)
    } finally {
      appender.kill()
    }
  })
})
