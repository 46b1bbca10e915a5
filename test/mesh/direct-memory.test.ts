import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

/**
 * The data path's throwaway buffers (one sealed and one opened buffer per
 * record: node:crypto allocates them) are collected as they go
 * (mesh/garbage.ts), not left to pile up to V8's 64 MiB external-memory limit
 * before a full collection. Measured in a process of its own, so that the
 * peak resident set is the transfer's alone.
 */
const FIXTURE = fileURLToPath(new URL('../fixtures/direct/garbage-peak.ts', import.meta.url))
const RECORDS = 256
// Without the collections the rise is ~88 MiB here (V8's 64 MiB limit and the live buffers); with them ~40.
const MAX_RISE_MIB = 64

describe('direct data socket: memory', () => {
  it(`holds its peak resident set less than ${MAX_RISE_MIB} MiB above the start while ${RECORDS} MiB of records pass`, async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [FIXTURE, String(RECORDS)], { timeout: 120_000 })
    const result = JSON.parse(stdout) as { bytes: number, riseMiB: number }
    expect(result.bytes).toBe(RECORDS * 1024 * 1024)
    expect(result.riseMiB).toBeLessThan(MAX_RISE_MIB)
  }, 150_000)
})
