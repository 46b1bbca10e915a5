import { describe, it, expect } from 'vitest'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

const run = promisify(execFile)
const SCRIPT = fileURLToPath(new URL('../../scripts/bench-transfer.ts', import.meta.url))

describe('bench:transfer (smoke: a few MiB, one repetition)', () => {
  it('measures raw TCP, the mesh and file → file side by side and prints one JSON object', async () => {
    const { stdout } = await run(process.execPath, [SCRIPT, '--size', '4MiB', '--reps', '1', '--json'], { timeout: 150_000, maxBuffer: 1 << 20 })
    const result = JSON.parse(stdout.trim().split('\n').at(-1) as string) as Record<string, unknown>
    expect(result.sizeBytes).toBe(4 * 1024 * 1024)
    for (const key of ['rawTcpMBps', 'meshMBps', 'meshOverRaw', 'fileMBps', 'fileOverRaw', 'agentPeakRssMiB', 'meshMBPerCpuSecond', 'fileMBPerCpuSecond',
      'fileFastMBps', 'floorCpuSecondsPerGB', 'fileCpuSecondsPerGB', 'fileFastCpuSecondsPerGB', 'fileOverFloor', 'fileFastOverFloor']) {
      expect(result[key], key).toBeTypeOf('number')
      expect(result[key] as number, key).toBeGreaterThan(0)
    }
    // scp is measured only where a local sshd can be started; otherwise the reason is given.
    if (result.scpMBps === null) expect(result.scpNote).toBeTypeOf('string')
    else expect(result.scpMBps as number).toBeGreaterThan(0)
    expect(result.fileFastMode).toBe('blake3')
    // The multi-stream row: at this size the plan keeps one range, and says so.
    expect(result).toMatchObject({ fileStreams: 4, fileStreamsRanges: 1 })
    for (const key of ['fileStreamsMBps', 'fileStreamsCpuSecondsPerGB']) expect(result[key] as number, key).toBeGreaterThan(0)
    if (result.scpMBps === null) expect(result.fileStreamsOverScp).toBeNull()
    else expect(result.fileStreamsOverScp as number).toBeGreaterThan(0)
    if (result.scpMBps === null) expect(result.fileFastOverScp).toBeNull()
    else expect(result.fileFastOverScp as number).toBeGreaterThan(0)
    // One turn per repetition, every kind of copy in it (scp where it was measured).
    expect(result.copyOrder).toEqual([['file', 'blake3', 'streams', ...(result.scpMBps === null ? [] : ['scp'])]])
  }, 180_000)
})
