import { describe, expect, it } from 'vitest'
import { StaccatoError, UnsupportedError } from '../../mesh/index.ts'
import { canResumeWrites } from '../../protocols/index.ts'
import type { Writer } from '../../protocols/index.ts'
import type { Suite } from './conformance.ts'
import { MiB, collect, failsWith, sha256, sourceBytes } from './support.ts'

/** Chunk sizes from tiny to large, so coalescing and direct writes both run. */
const CHUNKS = [1, 100, 4096, 70_000, MiB, 3 * MiB + 5, 17]

function pieces (bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = CHUNKS[i % CHUNKS.length]
    out.push(bytes.subarray(at, at + n))
    at += n
  }
  return out
}

async function writeAll (writer: Writer, bytes: Uint8Array): Promise<void> {
  for (const p of pieces(bytes)) await writer.write(p)
}

export function describeWrites (s: Suite): void {
  const { h, plugin, name } = s
  const caps = plugin.capabilities
  const writable = caps.write && h.url !== undefined
  const checked = writable && s.canReadBack
  const resumes = writable && canResumeWrites(caps)
  const url = (n: string): URL => h.url!(n)

  async function content (label: string, size = 5 * MiB + 3): Promise<{ n: string, bytes: Buffer }> {
    const n = name(label)
    return { n, bytes: await sourceBytes(n, size) }
  }

  async function put (n: string, bytes: Uint8Array): Promise<void> {
    const writer = await plugin.write(url(n), { offset: 0, size: bytes.length, key: 'put' })
    await writeAll(writer, bytes)
    await writer.commit()
  }

  async function expectAt (n: string, bytes: Uint8Array | undefined): Promise<void> {
    const got = await s.readBack(n)
    if (bytes === undefined) expect(got, `${n} should be absent`).toBeUndefined()
    else expect(got === undefined ? 'absent' : sha256(got), `${n} content`).toBe(sha256(bytes))
  }

  describe('write', () => {
    it.runIf(checked)('writes an object in chunks of any size and reads back the same bytes', async () => {
      const { n, bytes } = await content('write')
      const writer = await plugin.write(url(`sub/dir/${n}`), { offset: 0, size: bytes.length, key: 'w1' })
      await writeAll(writer, bytes)
      const durable = await writer.sync()
      expect(durable === bytes.length || (!canResumeWrites(caps) && durable === 0)).toBe(true)
      await writer.commit()
      await expectAt(`sub/dir/${n}`, bytes)
    })

    it.runIf(checked)('shows nothing at the target before commit and the whole object after (atomic)', async () => {
      const { n, bytes } = await content('atomic')
      const writer = await plugin.write(url(n), { offset: 0, key: 'a1' })
      await writeAll(writer, bytes.subarray(0, 3 * MiB))
      await writer.sync()
      await expectAt(n, undefined)
      await writeAll(writer, bytes.subarray(3 * MiB))
      await expectAt(n, undefined)
      await writer.commit()
      await expectAt(n, bytes)
    })

    it.runIf(checked)('keeps the old object intact until an overwrite commits', async () => {
      const { n, bytes: before } = await content('overwrite', 2 * MiB)
      const after = await sourceBytes(`${n}-v2`, 3 * MiB + 1)
      await put(n, before)
      const writer = await plugin.write(url(n), { offset: 0, key: 'o2' })
      await writeAll(writer, after.subarray(0, 2 * MiB))
      await expectAt(n, before)
      await writeAll(writer, after.subarray(2 * MiB))
      await writer.commit()
      await expectAt(n, after)
    })

    it.runIf(checked)('leaves no object at the target when the write fails midway (and the writer is aborted)', async () => {
      const { n, bytes } = await content('fails')
      async function * failingSource (): AsyncGenerator<Uint8Array> {
        yield bytes.subarray(0, 2 * MiB)
        throw new Error('source broke')
      }
      const writer = await plugin.write(url(n), { offset: 0, size: bytes.length, key: 'f1' })
      await expect((async () => {
        try {
          for await (const chunk of failingSource()) await writer.write(chunk)
        } catch (err) {
          await writer.abort()
          throw err
        }
      })()).rejects.toThrow('source broke')
      await expectAt(n, undefined)
    })

    it.runIf(checked)('leaves the previous object intact when an overwrite is aborted', async () => {
      const { n, bytes } = await content('abort-overwrite', MiB)
      await put(n, bytes)
      const writer = await plugin.write(url(n), { offset: 0, key: 'ao' })
      await writer.write(await sourceBytes('other', 2 * MiB))
      await writer.abort()
      await expectAt(n, bytes)
    })

    it.runIf(checked)('refuses to commit fewer bytes than the declared size', async () => {
      const { n, bytes } = await content('short')
      const writer = await plugin.write(url(n), { offset: 0, size: bytes.length, key: 's1' })
      await writer.write(bytes.subarray(0, MiB))
      await expect(writer.commit()).rejects.toBeInstanceOf(StaccatoError)
      await writer.abort()
      await expectAt(n, undefined)
    })

    it.runIf(checked)('refuses writes after commit and after abort', async () => {
      const { n, bytes } = await content('finished', 100)
      const writer = await plugin.write(url(n), { offset: 0, key: 'd1' })
      await writer.write(bytes)
      await writer.commit()
      await expect(writer.write(bytes)).rejects.toBeInstanceOf(StaccatoError)
      const other = await plugin.write(url(name('finished')), { offset: 0, key: 'd2' })
      await other.abort()
      await expect(other.write(bytes)).rejects.toBeInstanceOf(StaccatoError)
    })

    it.runIf(checked)('writes to different targets concurrently', async () => {
      const objects = await Promise.all([1, 2, 3, 4, 5, 6].map(async i => await content(`concurrent${i}`, i * 700_001)))
      const writers = await Promise.all(objects.map(async ({ n, bytes }) => await plugin.write(url(n), { offset: 0, size: bytes.length, key: 'c' })))
      const chunked = objects.map(o => pieces(o.bytes))
      for (let round = 0; chunked.some(c => round < c.length); round++) {
        await Promise.all(writers.map(async (w, i) => { if (round < chunked[i].length) await w.write(chunked[i][round]) }))
      }
      await Promise.all(writers.map(async w => await w.commit()))
      for (const { n, bytes } of objects) await expectAt(n, bytes)
    })
  })

  describe('resume', () => {
    it.runIf(checked && resumes)('continues a kept partial from an offset and reads back the whole object', async () => {
      const { n, bytes } = await content('resume')
      const half = 2 * MiB + 77
      const first = await plugin.write(url(n), { offset: 0, size: bytes.length, key: 'r1' })
      await writeAll(first, bytes.subarray(0, half))
      expect(await first.sync()).toBe(half)
      await first.abort({ keepPartial: true })
      await expectAt(n, undefined)
      const second = await plugin.write(url(n), { offset: half, size: bytes.length, key: 'r1' })
      const kept = second.readPartial === undefined ? bytes.subarray(0, half) : await collect(second.readPartial())
      expect(sha256(kept)).toBe(sha256(bytes.subarray(0, half)))
      await writeAll(second, bytes.subarray(half))
      await second.commit()
      await expectAt(n, bytes)
    })

    it.runIf(checked && resumes)('resumes from below what was written: bytes past the offset are replaced', async () => {
      const { n, bytes } = await content('resume-lower')
      const first = await plugin.write(url(n), { offset: 0, key: 'r2' })
      await writeAll(first, bytes.subarray(0, 3 * MiB))
      await writeAll(first, Buffer.alloc(MiB, 0xee))
      await first.sync()
      await first.abort({ keepPartial: true })
      const second = await plugin.write(url(n), { offset: 3 * MiB, key: 'r2' })
      await writeAll(second, bytes.subarray(3 * MiB))
      await second.commit()
      await expectAt(n, bytes)
    })

    it.runIf(checked && resumes)('abort removes the partial: it cannot be resumed afterwards', async () => {
      const { n, bytes } = await content('abort-removes')
      const first = await plugin.write(url(n), { offset: 0, key: 'r3' })
      await writeAll(first, bytes.subarray(0, MiB))
      await first.sync()
      await first.abort()
      await expect(plugin.write(url(n), { offset: MiB, key: 'r3' })).rejects.toBeInstanceOf(StaccatoError)
      await expectAt(n, undefined)
    })

    it.runIf(writable && !canResumeWrites(caps))('refuses a write from an offset when writes cannot resume', async () => {
      await failsWith(plugin.write(url(name('no-resume')), { offset: 10, key: 'r4' }), UnsupportedError)
    })
  })
}
