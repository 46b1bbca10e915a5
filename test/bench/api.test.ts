import { describe, it, expect } from 'vitest'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

const run = promisify(execFile)
const SCRIPT = fileURLToPath(new URL('../../scripts/bench-api.ts', import.meta.url))

describe('bench:api (smoke: three seconds per phase — one second saw no submission finish at load 15 —, a small queue)', () => {
  it('measures submissions, reads, a scheduling pass and list pages and prints one JSON object', async () => {
    const { stdout } = await run(process.execPath, [SCRIPT, '--duration', '3', '--connections', '8', '--queued', '2000', '--json'], { timeout: 150_000, maxBuffer: 1 << 20 })
    const result = JSON.parse(stdout.trim().split('\n').at(-1) as string) as Record<string, unknown>
    for (const key of ['submitPerSec', 'submitP99Ms', 'getPerSec', 'getP99Ms', 'rssAt100kMiB', 'listPageP99Ms']) {
      expect(result[key], key).toBeTypeOf('number')
      expect(result[key] as number, key).toBeGreaterThan(0)
    }
    expect(result.schedulePassMs).toBeTypeOf('number')
    expect(result.schedulePassMs as number).toBeGreaterThanOrEqual(0)
    // Filled to at least --queued: the submit phase alone may have queued more.
    expect(result.queued as number).toBeGreaterThanOrEqual(2000)
    expect(result.submitFailed).toBe(0)
  }, 180_000)
})
