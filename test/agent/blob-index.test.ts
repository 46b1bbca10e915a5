import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BlobIndex } from '../../agent/blob-index.ts'
import type { PluginSet } from '../../agent/resolve.ts'

const digestOf = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** A blob as a socket gives it: many small chunks. */
async function * chunked (bytes: Buffer, size: number, fail?: Error): AsyncIterable<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size)
  if (fail !== undefined) throw fail
}

describe('BlobIndex.put', () => {
  let dir: string
  let index: BlobIndex
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-blob-index-'))
    index = await BlobIndex.open(dir, 'self', new Map() as unknown as PluginSet)
  })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  async function held (digest: string): Promise<Buffer | undefined> {
    const reader = await index.find(digest)
    if (reader === undefined) return undefined
    const parts: Uint8Array[] = []
    for await (const c of reader.read(0, reader.size)) parts.push(c)
    return Buffer.concat(parts)
  }

  it('stores a blob given in many small chunks byte for byte, batched or not, and passes each chunk on', async () => {
    // 2.5 MiB in 64 KiB chunks: several batched writes and a partial last one.
    const bytes = randomBytes(2.5 * 1024 * 1024)
    const digest = digestOf(bytes)
    let seen = 0
    await index.put(digest, bytes.length, chunked(bytes, 64 * 1024), c => { seen += c.byteLength })
    expect(seen).toBe(bytes.length)
    expect((await held(digest))?.equals(bytes)).toBe(true)
    expect(Buffer.from(await readFile(index.storePath(digest))).equals(bytes)).toBe(true)
  })

  it('refuses bytes that do not hash to the digest, leaving nothing behind', async () => {
    const bytes = randomBytes(300_000)
    const digest = digestOf(randomBytes(16))
    await expect(index.put(digest, bytes.length, chunked(bytes, 10_000), () => {})).rejects.toMatchObject({ code: 'checksum_mismatch' })
    expect(await index.find(digest)).toBeUndefined()
    expect((await readdir(join(dir, 'sha256'))).filter(f => f.endsWith('.partial'))).toEqual([])
  })

  it('with a source that checks the digest itself, keeps nothing when that source throws at the end', async () => {
    const bytes = randomBytes(1_500_000)
    const digest = digestOf(bytes)
    const fail = Object.assign(new Error('the registry sent bytes that hash to something else'), { code: 'checksum_mismatch' })
    await expect(index.put(digest, bytes.length, chunked(bytes, 65_536, fail), () => {}, { sourceChecksDigest: true })).rejects.toThrow('hash to something else')
    expect(await index.find(digest)).toBeUndefined()
    expect((await readdir(join(dir, 'sha256'))).filter(f => f.endsWith('.partial'))).toEqual([])
    // And keeps the blob when that source ends normally.
    await index.put(digest, bytes.length, chunked(bytes, 65_536), () => {}, { sourceChecksDigest: true })
    expect((await held(digest))?.equals(bytes)).toBe(true)
  })

  it('reads any range of a stored blob, with buffers reused between chunks, byte for byte', async () => {
    // 3 MiB + 5 bytes: ranges across the 1 MiB reads, and a short last one.
    const bytes = randomBytes(3 * 1024 * 1024 + 5)
    const digest = digestOf(bytes)
    await index.put(digest, bytes.length, chunked(bytes, 1 << 20), () => {})
    const reader = await index.find(digest, bytes.length)
    if (reader === undefined) throw new Error('the blob was not found after put')
    for (const [offset, length] of [[0, bytes.length], [1, 2 * 1024 * 1024], [1024 * 1024 - 3, 7], [bytes.length - 5, 5], [10, 0]]) {
      const copies: Buffer[] = []
      // The caller's side of the contract: each chunk copied before the next is asked for.
      for await (const c of reader.read(offset, length, { reuseBuffers: true })) copies.push(Buffer.from(c))
      expect(Buffer.concat(copies).equals(bytes.subarray(offset, offset + length))).toBe(true)
    }
  })

  it('refuses a blob shorter than its size', async () => {
    const bytes = randomBytes(100_000)
    await expect(index.put(digestOf(bytes), bytes.length + 1, chunked(bytes, 4096), () => {})).rejects.toMatchObject({ code: 'network' })
    expect(await index.find(digestOf(bytes))).toBeUndefined()
  })
})
