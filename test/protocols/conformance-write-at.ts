import { describe, expect, it } from 'vitest'
import { StaccatoError } from '../../mesh/index.ts'
import type { Suite } from './conformance.ts'
import { MiB, sha256, sourceBytes } from './support.ts'

/** Piece size for these cases: small, and not a divisor of the object size, so the last piece is short. */
const PIECE = 256 * 1024 + 3

function pieceOf (bytes: Uint8Array, i: number): { offset: number, parts: Uint8Array[] } {
  const offset = i * PIECE
  const piece = bytes.subarray(offset, Math.min(bytes.length, offset + PIECE))
  // Several parts per piece, as the swarm receives them from the wire.
  const cut = Math.floor(piece.length / 3)
  return { offset, parts: [piece.subarray(0, cut), piece.subarray(cut, 2 * cut), piece.subarray(2 * cut)] }
}

/** Run for plug-ins with capabilities.writeAt: openWriterAt, as a distribution's destination uses it. */
export function describeWritesAt (s: Suite): void {
  const { h, plugin, name } = s
  const checked = plugin.capabilities.writeAt === true && h.url !== undefined && s.canReadBack
  const url = (n: string): URL => h.url!(n)

  async function expectAt (n: string, bytes: Uint8Array | undefined): Promise<void> {
    const got = await s.readBack(n)
    if (bytes === undefined) expect(got, `${n} should be absent`).toBeUndefined()
    else expect(got === undefined ? 'absent' : sha256(got), `${n} content`).toBe(sha256(bytes))
  }

  describe('writeAt', () => {
    it.runIf(checked)('writes pieces in any order, concurrently, reads them back, and shows the object only after commit', async () => {
      const n = name('at')
      const bytes = await sourceBytes(n, 2 * MiB + 7)
      const count = Math.ceil(bytes.length / PIECE)
      const writer = await plugin.openWriterAt!(url(n), { key: 'at1', size: bytes.length, resume: false })
      expect(writer.resumed).toBe(false)
      const order = [...Array(count).keys()].reverse()
      await Promise.all(order.map(async i => {
        const { offset, parts } = pieceOf(bytes, i)
        await writer.writeAt(offset, parts)
      }))
      for (const i of [0, count - 1, 3]) {
        const { offset, parts } = pieceOf(bytes, i)
        const length = parts.reduce((a, p) => a + p.length, 0)
        expect(sha256(await writer.readAt(offset, length))).toBe(sha256(Buffer.concat(parts)))
      }
      await writer.sync()
      await expectAt(n, undefined)
      await writer.commit()
      await expectAt(n, bytes)
      // A finished destination still serves its pieces.
      expect(sha256(await writer.readAt(0, PIECE))).toBe(sha256(bytes.subarray(0, PIECE)))
      await writer.abort()
      await expectAt(n, bytes)
    })

    it.runIf(checked)('keeps a partial for a later writer with the same key, and starts afresh without resume', async () => {
      const n = name('at-resume')
      const bytes = await sourceBytes(n, MiB + 11)
      const first = await plugin.openWriterAt!(url(n), { key: 'at2', size: bytes.length, resume: true })
      expect(first.resumed).toBe(false)
      const { offset, parts } = pieceOf(bytes, 2)
      await first.writeAt(offset, parts)
      await first.sync()
      await first.abort({ keepPartial: true })
      await expectAt(n, undefined)
      const second = await plugin.openWriterAt!(url(n), { key: 'at2', size: bytes.length, resume: true })
      expect(second.resumed).toBe(true)
      expect(sha256(await second.readAt(offset, PIECE))).toBe(sha256(Buffer.concat(parts)))
      for (let i = 0; i * PIECE < bytes.length; i++) if (i !== 2) await second.writeAt(pieceOf(bytes, i).offset, pieceOf(bytes, i).parts)
      await second.commit()
      await second.abort()
      await expectAt(n, bytes)
      const fresh = await plugin.openWriterAt!(url(name('at-resume')), { key: 'at2', size: 10, resume: false })
      expect(fresh.resumed).toBe(false)
      await fresh.abort()
    })

    it.runIf(checked)('abort removes the partial: a later writer finds nothing to resume', async () => {
      const n = name('at-abort')
      const w = await plugin.openWriterAt!(url(n), { key: 'at3', size: 100, resume: false })
      await w.writeAt(0, [Buffer.alloc(100, 1)])
      await w.abort()
      const again = await plugin.openWriterAt!(url(n), { key: 'at3', size: 100, resume: true })
      expect(again.resumed).toBe(false)
      await again.abort()
      await expectAt(n, undefined)
    })

    it.runIf(checked)('refuses ranges outside the size, and writes after commit or abort', async () => {
      const n = name('at-range')
      const w = await plugin.openWriterAt!(url(n), { key: 'at4', size: 100, resume: false })
      await expect(w.writeAt(90, [Buffer.alloc(11)])).rejects.toBeInstanceOf(StaccatoError)
      await expect(w.writeAt(-1, [Buffer.alloc(1)])).rejects.toBeInstanceOf(StaccatoError)
      await expect(w.readAt(50, 51)).rejects.toBeInstanceOf(StaccatoError)
      await w.writeAt(0, [Buffer.alloc(100, 2)])
      await w.commit()
      await expect(w.writeAt(0, [Buffer.alloc(1)])).rejects.toBeInstanceOf(StaccatoError)
      await w.abort()
      await expect(w.writeAt(0, [Buffer.alloc(1)])).rejects.toBeInstanceOf(StaccatoError)
      await expectAt(n, Buffer.alloc(100, 2))
    })
  })
}
