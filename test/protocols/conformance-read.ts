import { describe, expect, it } from 'vitest'
import { InvalidArgumentError, NotFoundError, SourceChangedError, UnsupportedError } from '../../mesh/index.ts'
import type { Suite } from './conformance.ts'
import { MiB, collect, failsWith, sha256, sourceBytes } from './support.ts'

/** Crosses the 1 MiB chunk boundaries of the built-in plug-ins, and is not a multiple of 16 (AES blocks). */
const SIZE = 3 * MiB + 4321

export function describeReads ({ h, plugin, name }: Suite): void {
  const caps = plugin.capabilities
  const seed = h.seed?.bind(h)
  const readable = caps.read && seed !== undefined
  const hasMissing = caps.read && h.url !== undefined

  async function seeded (label: string, size = SIZE): Promise<{ url: URL, bytes: Buffer, n: string }> {
    const n = name(label)
    const url = await seed!(n, size)
    return { url, bytes: await sourceBytes(n, size), n }
  }

  describe('stat', () => {
    it.runIf(readable)('reports size, mtime and etag of a present object', async () => {
      const { url } = await seeded('stat')
      const st = await plugin.stat(url)
      expect(st.size).toBe(SIZE)
      expect(Number.isInteger(st.mtime) && st.mtime >= 0).toBe(true)
      expect(st.etag === undefined || typeof st.etag === 'string').toBe(true)
    })

    it.runIf(readable && caps.checksum)('returns the sha256 it declares it knows', async () => {
      const { url, bytes } = await seeded('checksum')
      expect((await plugin.stat(url)).sha256).toBe(sha256(bytes))
    })

    it.runIf(hasMissing)('throws NotFoundError for a missing object', async () => {
      await failsWith(plugin.stat(h.url!(name('missing'))), NotFoundError)
    })
  })

  describe('read', () => {
    it.runIf(readable)('reads a whole object', async () => {
      const { url, bytes } = await seeded('full')
      const chunks: Uint8Array[] = []
      for await (const chunk of plugin.read(url, { offset: 0 })) chunks.push(chunk)
      expect(chunks.every(c => c instanceof Uint8Array)).toBe(true)
      expect(sha256(Buffer.concat(chunks))).toBe(sha256(bytes))
    })

    it.runIf(readable)('reads an empty object', async () => {
      const { url } = await seeded('empty', 0)
      expect((await plugin.stat(url)).size).toBe(0)
      expect((await collect(plugin.read(url, { offset: 0 }))).length).toBe(0)
    })

    it.runIf(readable)('reads ranges: offset, offset + length, a length past the end is cut at the end', async () => {
      const { url, bytes } = await seeded('ranges')
      const ranges: Array<[number, number | undefined]> = [
        [1, undefined], [MiB - 1, 2], [123, MiB + 7], [SIZE - 10, undefined], [SIZE - 5, 100], [7, 0], [2 * MiB, MiB]
      ]
      for (const [offset, length] of ranges) {
        const got = await collect(plugin.read(url, { offset, length }))
        const want = bytes.subarray(offset, length === undefined ? undefined : offset + length)
        expect(got.length, `offset ${offset} length ${length}`).toBe(want.length)
        expect(sha256(got), `offset ${offset} length ${length}`).toBe(sha256(want))
      }
    })

    it.runIf(readable)('gives nothing at offset == size, with or without the expected version', async () => {
      const { url } = await seeded('at-end')
      const st = await plugin.stat(url)
      expect((await collect(plugin.read(url, { offset: SIZE }))).length).toBe(0)
      expect((await collect(plugin.read(url, { offset: SIZE, expect: st }))).length).toBe(0)
    })

    it.runIf(readable)('throws InvalidArgumentError for an offset past the end', async () => {
      const { url } = await seeded('past-end')
      const st = await plugin.stat(url)
      await failsWith(collect(plugin.read(url, { offset: SIZE + 1 })), InvalidArgumentError)
      await failsWith(collect(plugin.read(url, { offset: SIZE + 1, expect: st })), InvalidArgumentError)
    })

    it.runIf(hasMissing)('throws NotFoundError when reading a missing object', async () => {
      await failsWith(collect(plugin.read(h.url!(name('missing')), { offset: 0 })), NotFoundError)
    })
  })

  describe('source changes', () => {
    it.runIf(readable)('reads when the expected version is the current one, whole and from an offset', async () => {
      const { url, bytes } = await seeded('expect-ok')
      const st = await plugin.stat(url)
      expect(sha256(await collect(plugin.read(url, { offset: 0, expect: st })))).toBe(sha256(bytes))
      expect(sha256(await collect(plugin.read(url, { offset: 1000, expect: st })))).toBe(sha256(bytes.subarray(1000)))
    })

    it.runIf(readable)('throws SourceChangedError when the object is not the expected version', async () => {
      const { url } = await seeded('expect-other')
      const st = await plugin.stat(url)
      const others = [
        { ...st, size: st.size + 1 },
        { ...st, etag: `other-${st.etag ?? ''}`, mtime: st.mtime + 1000 }
      ]
      for (const expected of others) {
        await failsWith(collect(plugin.read(url, { offset: 0, expect: expected })), SourceChangedError)
        await failsWith(collect(plugin.read(url, { offset: 10, expect: expected })), SourceChangedError)
      }
    })

    it.runIf(readable && h.mutate !== undefined)('detects an object that changed between stat and read (SourceChanged)', async () => {
      const { url, n } = await seeded('mutated')
      const st = await plugin.stat(url)
      await h.mutate!(n)
      await failsWith(collect(plugin.read(url, { offset: 0, expect: st })), SourceChangedError)
      // A resumed read must not splice the new version's tail onto the old one's head.
      await failsWith(collect(plugin.read(url, { offset: 1000, expect: st })), SourceChangedError)
      await failsWith(collect(plugin.read(url, { offset: 1000, length: 10, expect: st })), SourceChangedError)
    })
  })

  describe('operations it does not declare', () => {
    it.runIf(!caps.read)('read throws UnsupportedError', async () => {
      await failsWith(collect(plugin.read(new URL(`${plugin.scheme}://x/y`), { offset: 0 })), UnsupportedError)
    })

    it.runIf(!caps.write)('write throws UnsupportedError', async () => {
      await failsWith(plugin.write(new URL(`${plugin.scheme}://x/y`), { offset: 0, key: 'k' }), UnsupportedError)
    })
  })

  describe('list', () => {
    it.runIf(caps.list && readable && h.url !== undefined)('lists the objects of a directory', async () => {
      const dir = name('dir').replace(/\.bin$/, '')
      await seed!(`${dir}/a`, 10)
      await seed!(`${dir}/b`, 20)
      const entries = []
      for await (const e of plugin.list!(h.url!(`${dir}/`))) entries.push(e)
      entries.sort((x, y) => x.path.localeCompare(y.path))
      expect(entries.map(e => [e.path.split('/').pop(), e.size, e.type])).toEqual([['a', 10, 'file'], ['b', 20, 'file']])
    })
  })
}
