import { describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../../mesh/index.ts'
import { parseSize, random, randomDigest } from '../../protocols/index.ts'
import { describeConformance } from './conformance.ts'
import { MiB, collect, seedOf, sha256 } from './support.ts'

describeConformance('random', async () => ({
  plugin: random(),
  seed: async (name, size) => new URL(`random://?size=${size}&seed=${encodeURIComponent(seedOf(name))}`),
  largeSize: 256 * MiB
}))

describe('random plug-in', () => {
  // Computed independently: head -c 1048576 /dev/zero | openssl enc -aes-128-ctr -K <sha256('staccato-random-v1\0' + '7')[0:16]> -iv 0 | sha256sum
  const KNOWN = '561bf08b69838153436a6ae909bc910290c4be6bb0f97525193a02107c9a0eaa'

  it('gives the known bytes for random://?size=1MiB&seed=7', async () => {
    expect(sha256(await collect(random().read(new URL('random://?size=1MiB&seed=7'), { offset: 0 })))).toBe(KNOWN)
    expect(await randomDigest(MiB, '7')).toBe(KNOWN)
  })

  it('stats size, mtime 0 and an etag from seed and size', async () => {
    expect(await random().stat(new URL('random://?size=1GiB&seed=7'))).toEqual({ size: 2 ** 30, mtime: 0, etag: '7-1073741824' })
  })

  it('parses sizes in bytes, binary and decimal units', () => {
    expect([parseSize('4096'), parseSize('64KiB'), parseSize('1GiB'), parseSize('500MB'), parseSize('2k'), parseSize('1.5MiB')])
      .toEqual([4096, 65536, 2 ** 30, 500e6, 2048, 1.5 * MiB])
    expect(() => parseSize('12 parsecs')).toThrow(InvalidArgumentError)
    expect(() => parseSize('')).toThrow(InvalidArgumentError)
  })

  it('refuses a URL without a size', async () => {
    await expect(random().stat(new URL('random://?seed=7'))).rejects.toBeInstanceOf(InvalidArgumentError)
  })
})
