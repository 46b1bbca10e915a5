import { constants } from 'node:fs'
import { mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { NoSpaceError } from '../../mesh/index.ts'
import { alignedSetsOut, file } from '../../protocols/index.ts'
import type { OpenDirect, WriterAt } from '../../protocols/index.ts'
import { partialOpenDirect, smallTmpfs, takesDirectIo } from '../helpers/fdinfo.ts'
import { MiB, sha256 } from './support.ts'

/**
 * The file plug-in's writer at offsets with ranges written in order
 * (openRange, a multi-stream copy's) past the page cache, and read back past
 * it (readBack): which descriptors are open is seen in /proc/self/fdinfo,
 * the bytes by reading the committed file.
 */

const base = await mkdtemp(join(tmpdir(), 'staccato-file-direct-ranges-'))
afterAll(async () => await rm(base, { recursive: true, force: true }))
const volumes = [{ name: 'vol', root: base, readOnly: false }]
const u = (name: string): URL => new URL(`file:///vol/${name}`)

const direct = await takesDirectIo(base)
const why = direct ? '' : ` (SKIPPED: ${base}'s file system refuses O_DIRECT)`

function bytesOf (size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) b[i] = (i * 131 + seed * 7 + (i >> 12)) & 0xff
  return b
}

/** Chunk sizes that leave every later flush at an unaligned position, as network records do. */
const CHUNKS = [1, 4095, 70_000, MiB, 100, 3 * 4096]

/**
 * Writes [from, to) of `bytes` through one range, flushing every few chunks,
 * and checks after each flush that the file holds what was flushed (readAt:
 * the ranges run at once, and readBack is for one reader in order).
 */
async function writeRange (writer: WriterAt, bytes: Buffer, from: number, to: number, seed: number): Promise<void> {
  const out = await writer.openRange!(from)
  let at = from
  // Bounded: every round writes at least one byte.
  for (let i = seed; at < to; i++) {
    const n = Math.min(CHUNKS[i % CHUNKS.length], to - at)
    await out.write(bytes.subarray(at, at + n))
    at += n
    if (i % 3 === 0) {
      await out.flush()
      expect(sha256(await writer.readAt(from, at - from))).toBe(sha256(bytes.subarray(from, at)))
    }
  }
  await out.flush()
  await out.close()
}

/** Reads [0, size) back in order, as the ordered hash does, from unaligned offsets. */
async function readAllBack (writer: WriterAt, size: number): Promise<string> {
  const parts: Buffer[] = []
  let at = 0
  // Bounded: every read returns at least one byte.
  for (let i = 0; at < size; i++) {
    const b = await writer.readBack!(at, Math.min(size - at, CHUNKS[i % CHUNKS.length] + 4 * MiB))
    expect(b.byteLength).toBeGreaterThan(0)
    parts.push(Buffer.from(b))
    at += b.byteLength
  }
  return sha256(Buffer.concat(parts))
}

/** The access mode bits of open(2)'s flags (Node's constants have no O_ACCMODE). */
const ACCESS_MODE = 3

const SIZE = 8 * MiB + 12_345
/** Four ranges: 1 MiB-aligned boundaries (as ranges.ts plans them), the last one ending unaligned. */
const BOUNDS = [0, 2 * MiB, 4 * MiB, 6 * MiB, SIZE]

async function writeFourRanges (writer: WriterAt, bytes: Buffer, resumedAt: number[] = [0, 0, 0, 0]): Promise<void> {
  await Promise.all([0, 1, 2, 3].map(async i => { await writeRange(writer, bytes, BOUNDS[i] + resumedAt[i], BOUNDS[i + 1], i) }))
}

describe('file plug-in: ranges written past the page cache (O_DIRECT)', () => {
  it.skipIf(!direct)(`writes four ranges at once through O_DIRECT descriptors and reads them back byte-exact${why}`, async () => {
    const bytes = bytesOf(SIZE, 1)
    const writer = await file({ volumes }).openWriterAt!(u('ranges.bin'), { key: 'r', size: SIZE, resume: false })
    const out = await writer.openRange!(0)
    await out.write(bytes.subarray(0, MiB))
    expect(await partialOpenDirect(base, ['self'])).toBe(true)
    await out.close()
    await writeFourRanges(writer, bytes)
    expect(await readAllBack(writer, SIZE)).toBe(sha256(bytes))
    await writer.sync()
    await writer.commit()
    await writer.abort()
    expect(sha256(await readFile(join(base, 'ranges.bin')))).toBe(sha256(bytes))
    expect(alignedSetsOut()).toBe(0)
  })

  it.skipIf(!direct)(`resumes ranges at unaligned offsets of a kept partial${why}`, async () => {
    const bytes = bytesOf(SIZE, 2)
    const plugin = file({ volumes })
    const first = await plugin.openWriterAt!(u('resumed.bin'), { key: 'k', size: SIZE, resume: false })
    const kept = [MiB + 1, 4097, 0, 12_345]
    await Promise.all([0, 1, 2, 3].map(async i => { await writeRange(first, bytes, BOUNDS[i], BOUNDS[i] + kept[i], i) }))
    await first.sync()
    await first.abort({ keepPartial: true })
    const second = await plugin.openWriterAt!(u('resumed.bin'), { key: 'k', size: SIZE, resume: true })
    expect(second.resumed).toBe(true)
    await writeFourRanges(second, bytes, kept)
    expect(await readAllBack(second, SIZE)).toBe(sha256(bytes))
    await second.commit()
    await second.abort()
    expect(sha256(await readFile(join(base, 'resumed.bin')))).toBe(sha256(bytes))
    expect(alignedSetsOut()).toBe(0)
  })

  it('opens no O_DIRECT descriptor with directIo off', async () => {
    const opened: number[] = []
    const counting: OpenDirect = async (path, flags) => { opened.push(flags); return await open(path, flags) }
    const bytes = bytesOf(SIZE, 3)
    const writer = await file({ volumes, directIo: 'off', openDirect: counting }).openWriterAt!(u('off.bin'), { key: 'o', size: SIZE, resume: false })
    await writeFourRanges(writer, bytes)
    expect(await readAllBack(writer, SIZE)).toBe(sha256(bytes))
    expect(opened).toEqual([])
    expect(await partialOpenDirect(base, ['self'])).toBe(false)
    await writer.commit()
    await writer.abort()
    expect(sha256(await readFile(join(base, 'off.bin')))).toBe(sha256(bytes))
  })

  it('asks for O_DIRECT for each range and for the read-back with directIo auto (the seam sees it, whatever the file system)', async () => {
    const opened: number[] = []
    const counting: OpenDirect = async (path, flags) => { opened.push(flags); return await open(path, flags) }
    const bytes = bytesOf(SIZE, 4)
    const writer = await file({ volumes, openDirect: counting }).openWriterAt!(u('auto.bin'), { key: 'a', size: SIZE, resume: false })
    await writeFourRanges(writer, bytes)
    expect(await readAllBack(writer, SIZE)).toBe(sha256(bytes))
    await writer.commit()
    await writer.abort()
    expect(opened.filter(f => (f & constants.O_DIRECT) !== 0 && (f & ACCESS_MODE) === constants.O_WRONLY)).toHaveLength(4)
    expect(opened.filter(f => (f & constants.O_DIRECT) !== 0 && (f & ACCESS_MODE) === constants.O_RDONLY)).toHaveLength(1)
    expect(alignedSetsOut()).toBe(0)
  })

  it('writes and reads back as before when the file system refuses O_DIRECT at open (refusal injected)', async () => {
    const refuse: OpenDirect = async () => { throw Object.assign(new Error('EINVAL: invalid argument, open'), { code: 'EINVAL' }) }
    const bytes = bytesOf(SIZE, 5)
    const writer = await file({ volumes, openDirect: refuse }).openWriterAt!(u('refused-open.bin'), { key: 'ro', size: SIZE, resume: false })
    await writeFourRanges(writer, bytes)
    expect(await partialOpenDirect(base, ['self'])).toBe(false)
    expect(await readAllBack(writer, SIZE)).toBe(sha256(bytes))
    await writer.commit()
    await writer.abort()
    expect(sha256(await readFile(join(base, 'refused-open.bin')))).toBe(sha256(bytes))
  })

  it('loses no byte when O_DIRECT opens but its writes and reads are refused (refusal injected)', async () => {
    const handles: FileHandle[] = []
    // Real O_DIRECT descriptors whose reads and writes fail as such a file system's do; everything else is the real handle's.
    const refuseIo: OpenDirect = async (path, flags) => {
      const fh = await open(path, flags)
      handles.push(fh)
      return new Proxy(fh, {
        get (target, key) {
          if (key === 'write' || key === 'read') return async () => { throw Object.assign(new Error(`EINVAL: invalid argument, ${key}`), { code: 'EINVAL' }) }
          const value = Reflect.get(target, key) as unknown
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
        }
      })
    }
    const bytes = bytesOf(SIZE, 6)
    const writer = await file({ volumes, openDirect: refuseIo }).openWriterAt!(u('refused-io.bin'), { key: 'rw', size: SIZE, resume: false })
    await writeFourRanges(writer, bytes)
    expect(await readAllBack(writer, SIZE)).toBe(sha256(bytes))
    // Given up for each range and for the read-back: their O_DIRECT descriptors are closed.
    expect(handles.length).toBeGreaterThanOrEqual(5)
    expect(handles.every(h => h.fd === -1)).toBe(true)
    await writer.commit()
    await writer.abort()
    expect(sha256(await readFile(join(base, 'refused-io.bin')))).toBe(sha256(bytes))
    expect(alignedSetsOut()).toBe(0)
  })
})

describe('ranges past the page cache on a disk that fills', async () => {
  // A real full file system, 4 MiB (it takes O_DIRECT on this kernel).
  const tmpfs = await smallTmpfs(4)
  afterAll(tmpfs.unmount)
  const small = tmpfs.dir

  it.skipIf(!tmpfs.direct)(`reports no_space from a range's write and removes the partial, without hanging on its own ranges${tmpfs.skip}`, async () => {
    const plugin = file({ volumes: [{ name: 'small', root: small!, readOnly: false }] })
    const size = 3 * MiB
    const writer = await plugin.openWriterAt!(new URL('file:///small/big.bin'), { key: 'k', size, resume: false })
    // Another writer takes the space the free-space check saw.
    await writeFile(join(small!, 'filler'), Buffer.alloc(3 * MiB))
    const outs = await Promise.all([0, MiB + MiB / 2].map(async at => await writer.openRange!(at)))
    const err = await (async () => {
      const chunk = Buffer.alloc(MiB / 4, 1)
      for (let i = 0; i < 6; i++) await Promise.all(outs.map(async o => { await o.write(chunk) }))
      await Promise.all(outs.map(async o => { await o.flush() }))
      await writer.sync()
    })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoSpaceError)
    await writer.abort()
    expect(await readdir(small!)).toEqual(['filler'])
    expect(alignedSetsOut()).toBe(0)
  })
})
