import { describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { TransferStore } from '../../coordinator/store.ts'
import type { TransferRecord } from '../../coordinator/model.ts'
import { rawEntries, tempStore } from './helpers.ts'

const PIECE = 4 * 1024 * 1024

describe("a distribution's piece list in the store", () => {
  it('lives under its own key: progress writes leave it out, a restart puts it back, a delete removes it', async () => {
    const t = await tempStore()
    try {
      const { record } = await t.store.create({ source: 'agent://s/images/a.img', destinations: ['agent://c1/images/a.img', 'agent://c2/images/a.img'] }, { tenant: 'default' })
      const pieces = Array.from({ length: 100 }, (_, i) => createHash('sha256').update(String(i)).digest('hex'))
      const manifest = { size: 100 * PIECE, mtime: 1, pieceSize: PIECE, sha256: 'ab'.repeat(32), pieces }
      await t.store.update(record.id, () => ({ manifest }), `transfer.${record.id}.manifest`, {})
      await t.store.transition(record.id, 'scheduled', {})
      await t.store.transition(record.id, 'active', {})
      await t.store.setProgress(record.id, { bytesDone: 10 * PIECE, bytesTotal: 200 * PIECE })
      expect(t.store.get(record.id)?.manifest?.pieces).toEqual(pieces)
      await t.store.close()

      const records = await rawEntries(t.dir, 't') as Array<[string, TransferRecord]>
      expect(records).toHaveLength(1)
      // The progress write landed, without the 100 sha256s.
      expect(records[0][1].progress.bytesDone).toBe(10 * PIECE)
      expect(records[0][1].manifest?.pieces).toEqual([])
      expect(records[0][1].manifest?.sha256).toBe('ab'.repeat(32))
      expect(await rawEntries(t.dir, 'p')).toEqual([[`p!${record.id}`, pieces]])

      t.store = await TransferStore.open(t.dir)
      expect(t.store.get(record.id)?.manifest?.pieces).toEqual(pieces)
      await t.store.transition(record.id, 'canceled', {})
      await t.store.remove(record.id)
      await t.store.close()
      expect(await rawEntries(t.dir, 'p')).toEqual([])
    } finally {
      await rm(t.dir, { recursive: true, force: true })
    }
  })
})
