import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { randomStream } from '../../protocols/index.ts'
import type { Suite } from './conformance.ts'
import { MiB, memoryProbe, seedOf, sourceDigest } from './support.ts'

/**
 * Live memory may grow by this much while a large object streams. Reads and
 * writes hold a few MiB at most; an implementation that buffers the object
 * goes past it within the first quarter of the stream.
 */
const BOUND = 32 * MiB
const SAMPLE_EVERY = 16 * MiB

export function describeLarge (s: Suite): void {
  const { h, plugin, name } = s
  const caps = plugin.capabilities
  const size = h.largeSize ?? 128 * MiB

  describe('large objects', () => {
    it.runIf(caps.read && h.seed !== undefined)(`reads ${size / MiB} MiB with bounded memory`, async () => {
      const n = name('large-read')
      const url = await h.seed!(n, size)
      const want = await sourceDigest(n, size)
      const hash = createHash('sha256')
      const probe = memoryProbe()
      let total = 0
      let next = SAMPLE_EVERY
      for await (const chunk of plugin.read(url, { offset: 0 })) {
        hash.update(chunk)
        total += chunk.length
        if (total >= next) {
          probe.sample()
          next += SAMPLE_EVERY
        }
      }
      expect(total).toBe(size)
      expect(hash.digest('hex')).toBe(want)
      expect(probe.peak()).toBeLessThan(BOUND)
    })

    it.runIf(caps.write && h.url !== undefined && h.storesInMemory !== true)(`writes ${size / MiB} MiB from random:// with bounded memory`, async () => {
      const n = name('large-write')
      const target = h.url!(n)
      const writer = await plugin.write(target, { offset: 0, size, key: 'large' })
      const probe = memoryProbe()
      let total = 0
      let next = SAMPLE_EVERY
      for await (const chunk of randomStream(seedOf(n), 0, size)) {
        await writer.write(chunk)
        total += chunk.length
        if (total >= next) {
          probe.sample()
          next += SAMPLE_EVERY
        }
      }
      await writer.commit()
      probe.sample()
      expect(probe.peak()).toBeLessThan(BOUND)
    })

    it.runIf(caps.write && caps.read && h.url !== undefined)('reads back the large object it wrote', async () => {
      const n = name('large-roundtrip')
      const target = h.url!(n)
      const writer = await plugin.write(target, { offset: 0, size, key: 'large' })
      for await (const chunk of randomStream(seedOf(n), 0, size)) await writer.write(chunk)
      await writer.commit()
      const hash = createHash('sha256')
      for await (const chunk of plugin.read(target, { offset: 0 })) hash.update(chunk)
      expect(hash.digest('hex')).toBe(await sourceDigest(n, size))
    })
  })
}
