import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { file } from '../../protocols/index.ts'

/** reuseBuffers: the file plug-in reads into two buffers in turn, and a caller that copies each chunk in time gets every byte right. */
describe('file plug-in: reading into reused buffers', () => {
  let dir: string
  const content = randomBytes(5 * 1024 * 1024 + 3)
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-file-reuse-'))
    await writeFile(join(dir, 'f.bin'), content)
  })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('yields the file\'s bytes from two buffers taking turns', async () => {
    const plugin = file({ volumes: [{ name: 'vol', root: dir, readOnly: true }] })
    const copies: Buffer[] = []
    const backing = new Set<ArrayBufferLike>()
    for await (const chunk of plugin.read(new URL('file:///vol/f.bin'), { offset: 1000, reuseBuffers: true })) {
      copies.push(Buffer.from(chunk))
      backing.add(chunk.buffer)
    }
    expect(Buffer.concat(copies).equals(content.subarray(1000))).toBe(true)
    expect(copies.length).toBeGreaterThan(2)
    expect(backing.size).toBe(2)
  })
})
