import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, mkdir, rm, writeFile, utimes } from 'node:fs/promises'
import { randomBytes, createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Executor } from '../../agent/executor.ts'
import type { Report } from '../../agent/executor.ts'
import { Journal } from '../../agent/journal.ts'
import { newCounters } from '../../agent/counters.ts'
import { file } from '../../protocols/index.ts'
import type { MeshNode } from '../../mesh/index.ts'
import { NetworkError } from '../../mesh/index.ts'

const SIZE = 3 * 1024 * 1024

/**
 * An agent's executor over a real journal and a real volume, copying within
 * the agent (no network). The coordinator is reachable or not as each test says.
 */
describe('an attempt whose earlier attempt already delivered the object', () => {
  let dir: string
  let journal: Journal
  let executor: Executor
  let counters: ReturnType<typeof newCounters>
  let reports: Report[]
  let reachable: boolean
  const logged: string[] = []

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-executor-'))
    await mkdir(join(dir, 'vol'))
    journal = await Journal.open(join(dir, 'journal'))
    counters = newCounters()
    reports = []
    reachable = false
    executor = new Executor({
      self: 'me',
      node: undefined as unknown as MeshNode,
      plugins: { volumes: file({ volumes: [{ name: 'vol', root: join(dir, 'vol'), readOnly: false }] }), byScheme: new Map() },
      journal,
      counters,
      report: async r => {
        if (!reachable) throw new NetworkError('not connected to the coordinator')
        reports.push(r)
      },
      progress: () => {},
      log: msg => { logged.push(msg) },
      syncEveryBytes: 1024 * 1024,
      syncEveryMs: 1000,
      progressEveryMs: 1000
    })
  })
  afterEach(async () => {
    await executor.stop()
    await journal.close()
    await rm(dir, { recursive: true, force: true })
  })

  const job = (attempt: number): { transferId: string, attempt: number, source: string, destination: string } =>
    ({ transferId: 'tr_1', attempt, source: 'agent://me/vol/src.img', destination: 'agent://me/vol/dst.img' })

  async function settled (): Promise<void> {
    for (let i = 0; i < 400 && executor.active().length > 0; i++) await sleep(25)
    expect(executor.active()).toEqual([])
  }

  it('reports the earlier success for the new attempt instead of copying again, while the source is unchanged', async () => {
    const bytes = randomBytes(SIZE)
    await writeFile(join(dir, 'vol', 'src.img'), bytes)
    const digest = createHash('sha256').update(bytes).digest('hex')
    await executor.accept(job(1))
    await settled()
    // The coordinator was away: the outcome waits in the journal.
    expect((await journal.get('tr_1'))?.outcome).toMatchObject({ outcome: 'succeeded', sha256: digest })
    expect(logged).toContain('outcome kept until the coordinator is reachable')
    const copied = counters.bytesReceived

    reachable = true
    await executor.accept(job(2))
    await settled()
    expect(counters.bytesReceived).toBe(copied)
    expect(reports).toEqual([expect.objectContaining({ transferId: 'tr_1', attempt: 2, outcome: 'succeeded', sha256: digest })])
    expect(await journal.get('tr_1')).toBeUndefined()
  })

  it('copies again when the source changed since', async () => {
    await writeFile(join(dir, 'vol', 'src.img'), randomBytes(SIZE))
    await executor.accept(job(1))
    await settled()
    const copied = counters.bytesReceived
    const next = randomBytes(SIZE + 1)
    await writeFile(join(dir, 'vol', 'src.img'), next)
    await utimes(join(dir, 'vol', 'src.img'), new Date(), new Date(Date.now() + 5000))

    reachable = true
    await executor.accept(job(2))
    await settled()
    expect(counters.bytesReceived).toBe(copied + SIZE + 1)
    expect(reports.filter(r => r.outcome === 'succeeded')).toEqual([expect.objectContaining({ attempt: 2, sha256: createHash('sha256').update(next).digest('hex') })])
  })
})
