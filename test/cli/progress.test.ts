import { describe, it, expect } from 'vitest'
import { barLine, describe as describeTransfer } from '../../cli/progress.ts'
import { rows } from '../../cli/follow.ts'

const MiB = 1024 * 1024
const id = 'tr_01JDZ3M0000000000000000000'

describe('the progress bar line', () => {
  const active = { id, state: 'active', progress: { bytesDone: 1536 * MiB, bytesTotal: 4096 * MiB, rate: 123 * MiB, eta: 3725 } }
  const failed = { id, state: 'failed', progress: { bytesDone: 12 * MiB, bytesTotal: 64 * MiB, rate: 0 }, lastError: { code: 'source_changed', message: 'the source changed while it was read: size 67108864 → 67108865, mtime moved' } }
  const row = { id: '  → compute-12', state: 'queued', progress: { bytesDone: 0, bytesTotal: 4096 * MiB, rate: 0 } }

  for (const columns of [80, 120]) {
    it(`fits ${columns} columns and keeps the rate and the ETA`, () => {
      for (const t of [active, failed, row]) {
        const line = barLine(t, t.progress.bytesDone / (t.progress.bytesTotal ?? 1), columns)
        expect(line.length, line).toBeLessThan(columns)
      }
      // The rate and the ETA are what a watcher looks for: they are never the part cut.
      expect(barLine(active, 0.375, columns)).toMatch(/123\.0 MiB\/s {1,2}ETA 1h02m$/)
    })
  }

  it('has a bar and the whole text at 120 columns; at 80 the text is shorter, then the bar goes, then the text is cut', () => {
    expect(barLine(active, 0.375, 120)).toBe(`${id}  [${'='.repeat(10)}>${' '.repeat(15)}]  ${describeTransfer(active)}`)
    expect(barLine(active, 0.375, 80)).toBe(`${id}  active 1.5 GiB 37% 123.0 MiB/s ETA 1h02m`)
    expect(barLine(failed, 0.2, 80)).toMatch(/^tr_\S+ {2}failed 12\.0 MiB 18% source_changed: the source .*…$/)
  })
})

describe('the rows of a tree distribution', () => {
  it('show each destination\'s files beside its bytes', () => {
    const files = { total: 48, done: 20, skipped: 1, failed: 0 }
    const t = {
      id, state: 'active', source: 'agent://s/v/dataset/', destination: 'agent://a/v/copy/', attempt: 1, labels: {}, priority: 0, retries: 3, createdAt: '', updatedAt: '',
      progress: { bytesDone: MiB, bytesTotal: 4 * MiB, rate: 0, files: { total: 96, done: 20, skipped: 2, failed: 0 } },
      manifest: { size: 2 * MiB },
      destinations: [
        { destination: 'agent://a/v/copy/', agent: 'a', state: 'active', bytesDone: MiB, files },
        { destination: 'agent://b/v/copy/', agent: 'b', state: 'queued', bytesDone: 0 }
      ]
    }
    const [, a, b] = rows(t)
    expect(describeTransfer(a)).toContain('files 20 copied, 1 skipped, 0 failed of 48')
    expect(describeTransfer(b)).not.toContain('files')
  })
})
