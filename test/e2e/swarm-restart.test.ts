import { randomBytes } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Journal } from '../../agent/journal.ts'
import { TestMesh, sha256File } from '../helpers/mesh.ts'
import type { AgentStatus } from '../helpers/mesh.ts'

const MiB = 1024 * 1024
const SIZE = 8 * MiB

interface Distribution {
  id: string
  state: string
  sha256?: string
  destinations: Array<{ agent: string, state: string, bytesDone: number, sha256?: string }>
}

type SwarmStatus = AgentStatus & { swarms: Array<{ distributionId: string, outcome?: { outcome: string } }> }

describe('a distribution destination that finished while the coordinator was away', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.stop(); mesh = undefined })

  /**
   * `crashBeforeOutcome`: the agent died after renaming the file into place
   * but before journaling the outcome (its journal lists every piece, as it
   * does from just before the commit); the journal is edited back to that
   * state while the agent is down.
   */
  async function finishWhileCoordinatorAway (crashBeforeOutcome: boolean): Promise<void> {
    const m = mesh = await TestMesh.create()
    await m.startCoordinator(['--piece-size', String(MiB)])
    await m.startAgent('seed')
    // Slow enough that the coordinator is gone long before the last piece arrives.
    await m.startAgent('d1', ['--max-download-rate', '1MiB'])
    const source = join(m.volume('seed'), 'image.raw')
    await writeFile(source, randomBytes(SIZE))
    const digest = await sha256File(source)
    const res = await m.api('POST', '/v1/transfers', { source: 'agent://seed/vol/image.raw', destinations: ['agent://d1/vol/image.raw'] })
    expect(res.status).toBe(201)
    const { id } = res.body as Distribution
    await m.until(async () => ((await m.transfer(id)) as unknown as Distribution).destinations[0].bytesDone > 0, 60_000, 'the first pieces at d1')

    await m.kill('coordinator')
    // The pieces keep flowing between the agents; d1 verifies, commits and journals its outcome, which it cannot report.
    await m.until(async () => ((await m.status('d1')) as SwarmStatus).swarms.some(s => s.distributionId === id && s.outcome?.outcome === 'succeeded'), 60_000, 'd1 to journal its outcome')
    expect(await sha256File(join(m.volume('d1'), 'image.raw'))).toBe(digest)

    await m.kill('d1')
    if (crashBeforeOutcome) {
      const journal = await Journal.open(join(m.dir, 'agents', 'd1', 'journal'))
      const { outcome: _outcome, ...entry } = (await journal.getSwarm(id))!
      await journal.putSwarm(entry)
      await journal.close()
    }
    await m.restartAgent('d1')
    await m.startCoordinator(['--piece-size', String(MiB)])
    const done = await m.waitForState(id, ['succeeded', 'failed', 'canceled'], 60_000) as unknown as Distribution
    expect(done.state).toBe('succeeded')
    expect(done.destinations.map(d => [d.agent, d.state, d.sha256])).toEqual([['d1', 'succeeded', digest]])
    // Counted by the restarted agent: not one byte fetched again, and nothing left but the file.
    expect((await m.status('d1')).counters.bytesReceived).toBe(0)
    expect(await sha256File(join(m.volume('d1'), 'image.raw'))).toBe(digest)
    expect(await readdir(m.volume('d1'))).toEqual(['image.raw'])
    // Acknowledged: the journal lets go of it.
    await m.until(async () => ((await m.status('d1')) as SwarmStatus).swarms.length === 0, 30_000, 'd1 to drop the acknowledged outcome')
  }

  it('reports its journaled outcome after a restart instead of downloading again', async () => {
    await finishWhileCoordinatorAway(false)
  }, 120_000)

  it('finds the committed file after a crash before the outcome was journaled, and does not download again', async () => {
    await finishWhileCoordinatorAway(true)
  }, 120_000)
})
