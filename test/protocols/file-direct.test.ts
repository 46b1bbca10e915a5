import { mkdtemp, open, readFile, readdir, rm } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { NoSpaceError } from '../../mesh/index.ts'
import { alignedSetsOut, file } from '../../protocols/index.ts'
import type { OpenDirect, Writer } from '../../protocols/index.ts'
import { partialFileFlags, partialOpenDirect, smallTmpfs, takesDirectIo } from '../helpers/fdinfo.ts'
import { MiB, collect, sha256 } from './support.ts'

/**
 * The file plug-in's sequential writer past the page cache (O_DIRECT,
 * protocols/file-direct.ts): which descriptor the bytes go through is seen
 * in /proc/self/fdinfo, the bytes by reading the committed file back.
 */

const base = await mkdtemp(join(tmpdir(), 'staccato-file-direct-'))
afterAll(async () => await rm(base, { recursive: true, force: true }))
const volumes = [{ name: 'vol', root: base, readOnly: false }]
const u = (name: string): URL => new URL(`file:///vol/${name}`)

const direct = await takesDirectIo(base)
const why = direct ? '' : ` (SKIPPED: ${base}'s file system refuses O_DIRECT)`

async function partialFlags (dir = base): Promise<number[]> {
  return await partialFileFlags(dir, ['self'])
}

async function directOpen (dir = base): Promise<boolean> {
  return await partialOpenDirect(dir, ['self'])
}

function bytesOf (size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) b[i] = (i * 131 + seed * 7 + (i >> 12)) & 0xff
  return b
}

/** Chunk sizes that put every later write and sync at an unaligned position. */
const CHUNKS = [1, 4095, 70_000, MiB, 100, 3 * 4096]

async function writeInChunks (writer: Writer, bytes: Buffer, syncEvery = 2, from = 0): Promise<void> {
  let at = 0
  // Bounded: every round writes at least one byte.
  for (let i = 0; at < bytes.length; i++) {
    const n = Math.min(CHUNKS[i % CHUNKS.length], bytes.length - at)
    await writer.write(bytes.subarray(at, at + n))
    at += n
    if (i % syncEvery === syncEvery - 1) expect(await writer.sync()).toBe(from + at)
  }
}

async function committed (name: string): Promise<string> {
  return sha256(await readFile(join(base, name)))
}

describe('file plug-in: writes past the page cache (O_DIRECT)', () => {
  it.skipIf(!direct)(`writes through an O_DIRECT descriptor where the file system takes it${why}`, async () => {
    const bytes = bytesOf(2 * MiB + 5, 1)
    const writer = await file({ volumes }).write(u('direct.bin'), { offset: 0, size: bytes.length, key: 'd' })
    await writer.write(bytes.subarray(0, 2 * MiB))
    expect(await directOpen()).toBe(true)
    await writer.write(bytes.subarray(2 * MiB))
    await writer.commit()
    expect(await committed('direct.bin')).toBe(sha256(bytes))
    expect(await partialFlags()).toEqual([])
  })

  it('writes through the page cache only with directIo off', async () => {
    const bytes = bytesOf(2 * MiB + 5, 2)
    const writer = await file({ volumes, directIo: 'off' }).write(u('off.bin'), { offset: 0, size: bytes.length, key: 'o' })
    await writer.write(bytes.subarray(0, 2 * MiB))
    expect(await partialFlags()).toHaveLength(1)
    expect(await directOpen()).toBe(false)
    await writer.write(bytes.subarray(2 * MiB))
    await writer.commit()
    expect(await committed('off.bin')).toBe(sha256(bytes))
  })

  it.each([1, 4095, 4096, 4097, MiB + 1, 3 * MiB + 5])('writes %i bytes byte-exact, synced at unaligned positions', async size => {
    const bytes = bytesOf(size, size)
    const writer = await file({ volumes }).write(u(`size-${size}.bin`), { offset: 0, size, key: 's' })
    await writeInChunks(writer, bytes)
    await writer.commit()
    expect(await committed(`size-${size}.bin`)).toBe(sha256(bytes))
    expect(alignedSetsOut()).toBe(0)
  })

  it.skipIf(!direct)(`resumes a kept partial at an unaligned offset and continues past the page cache${why}`, async () => {
    const bytes = bytesOf(3 * MiB + 77, 3)
    const kept = MiB + 123
    const plugin = file({ volumes })
    const first = await plugin.write(u('resume.bin'), { offset: 0, size: bytes.length, key: 'r' })
    await first.write(bytes.subarray(0, kept))
    expect(await first.sync()).toBe(kept)
    await first.abort({ keepPartial: true })
    const second = await plugin.write(u('resume.bin'), { offset: kept, size: bytes.length, key: 'r' })
    expect(sha256(await collect(second.readPartial!()))).toBe(sha256(bytes.subarray(0, kept)))
    await writeInChunks(second, bytes.subarray(kept), 3, kept)
    expect(await directOpen()).toBe(true)
    await second.commit()
    expect(await committed('resume.bin')).toBe(sha256(bytes))
    expect(alignedSetsOut()).toBe(0)
  })

  it('opens no O_DIRECT descriptor for a file smaller than one staging buffer, and for the last bytes of a resumed one', async () => {
    const opened: string[] = []
    const counting: OpenDirect = async (path, flags) => { opened.push(path); return await open(path, flags) }
    const plugin = file({ volumes, openDirect: counting })
    const small = bytesOf(MiB - 1, 6)
    const writer = await plugin.write(u('small.bin'), { offset: 0, size: small.length, key: 's' })
    await writeInChunks(writer, small)
    expect(opened).toEqual([])
    expect(await directOpen()).toBe(false)
    await writer.commit()
    expect(await committed('small.bin')).toBe(sha256(small))
    // A large file whose resume leaves less than a buffer to write: the same.
    const large = bytesOf(3 * MiB, 7)
    const first = await plugin.write(u('tail.bin'), { offset: 0, size: large.length, key: 't' })
    await first.write(large.subarray(0, 2 * MiB + 5))
    expect(await first.sync()).toBe(2 * MiB + 5)
    await first.abort({ keepPartial: true })
    expect(opened).toHaveLength(1)
    const second = await plugin.write(u('tail.bin'), { offset: 2 * MiB + 5, size: large.length, key: 't' })
    await second.write(large.subarray(2 * MiB + 5))
    expect(opened).toHaveLength(1)
    await second.commit()
    expect(await committed('tail.bin')).toBe(sha256(large))
    // Size unknown: O_DIRECT is tried, as before.
    const unknown = await plugin.write(u('unknown.bin'), { offset: 0, key: 'u' })
    expect(opened).toHaveLength(2)
    await unknown.abort()
  })

  it('writes as before when the file system refuses O_DIRECT at open (refusal injected through the plug-in\'s openDirect)', async () => {
    const refuse: OpenDirect = async () => { throw Object.assign(new Error('EINVAL: invalid argument, open'), { code: 'EINVAL' }) }
    const bytes = bytesOf(2 * MiB + 4097, 4)
    const writer = await file({ volumes, openDirect: refuse }).write(u('refused-open.bin'), { offset: 0, size: bytes.length, key: 'ro' })
    await writeInChunks(writer, bytes)
    expect(await directOpen()).toBe(false)
    await writer.commit()
    expect(await committed('refused-open.bin')).toBe(sha256(bytes))
  })

  it('loses no byte when the file system opens O_DIRECT but refuses the first write (refusal injected through openDirect)', async () => {
    const handles: FileHandle[] = []
    // A real O_DIRECT descriptor whose writes fail as such a file system's do; everything else is the real handle's.
    const refuseWrites: OpenDirect = async (path, flags) => {
      const fh = await open(path, flags)
      handles.push(fh)
      return new Proxy(fh, {
        get (target, key) {
          if (key === 'write') return async () => { throw Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' }) }
          const value = Reflect.get(target, key) as unknown
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
        }
      })
    }
    const bytes = bytesOf(4 * MiB + 1, 5)
    const writer = await file({ volumes, openDirect: refuseWrites }).write(u('refused-write.bin'), { offset: 0, size: bytes.length, key: 'rw' })
    await writeInChunks(writer, bytes)
    expect(handles).toHaveLength(1)
    // Given up for this file: the O_DIRECT descriptor is closed, the ordinary one took every byte.
    expect(handles[0].fd).toBe(-1)
    expect(await directOpen()).toBe(false)
    await writer.commit()
    expect(await committed('refused-write.bin')).toBe(sha256(bytes))
    expect(alignedSetsOut()).toBe(0)
  })
})

describe('file plug-in past the page cache on a full disk', async () => {
  // A real full file system, 2 MiB (it takes O_DIRECT on this kernel).
  const tmpfs = await smallTmpfs(2)
  afterAll(tmpfs.unmount)
  const small = tmpfs.dir

  it.skipIf(!tmpfs.direct)(`reports no_space mid-file and removes the partial${tmpfs.skip}`, async () => {
    const full = file({ volumes: [{ name: 'small', root: small!, readOnly: false }] })
    const writer = await full.write(new URL('file:///small/big.bin'), { offset: 0, key: 'k' })
    const chunk = Buffer.alloc(MiB + 1, 1)
    await writer.write(chunk)
    expect(await directOpen(small)).toBe(true)
    const err = await (async () => {
      for (let i = 0; i < 4; i++) await writer.write(chunk)
      await writer.commit()
    })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoSpaceError)
    expect((err as NoSpaceError).code).toBe('no_space')
    await writer.abort()
    expect(await readdir(small!)).toEqual([])
    expect(alignedSetsOut()).toBe(0)
  })
})
