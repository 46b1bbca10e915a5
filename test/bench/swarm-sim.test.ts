import { describe, it, expect } from 'vitest'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

const run = promisify(execFile)
const SCRIPT = fileURLToPath(new URL('../../scripts/bench-swarm-sim.ts', import.meta.url))

describe('bench:swarm-sim (smoke: 20 hosts, 16 MiB)', () => {
  it('prints one JSON array with the figures of every scenario asked for', async () => {
    const { stdout } = await run(process.execPath, [SCRIPT, '--n', '20', '--size', '16MiB', '--piece', '1MiB', '--scenario', 'churn', '--json'], { timeout: 120_000, maxBuffer: 1 << 20 })
    const [result] = JSON.parse(stdout.trim().split('\n').at(-1) as string) as Array<Record<string, unknown>>
    expect(result.scenario).toBe('churn')
    expect(result.unfinished).toBe(0)
    for (const key of ['boundSeconds', 'p50OverBound', 'p99OverBound', 'maxOverBound', 'seedUploadOverF', 'trackerMessagesPerHost']) {
      expect(result[key], key).toBeTypeOf('number')
      expect(result[key] as number, key).toBeGreaterThan(0)
    }
    expect(result.p99OverBound as number).toBeGreaterThanOrEqual(result.p50OverBound as number)
  }, 150_000)
})
