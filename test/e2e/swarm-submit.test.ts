import { describe, it, expect, afterEach } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { TestMesh } from '../helpers/mesh.ts'

const MiB = 1024 * 1024

interface Distribution {
  id: string
  state: string
  progress: { rate: number, eta?: number }
  destinations: Array<{ agent: string, state: string, bytesDone: number }>
}

describe('distribution edges an operator meets', () => {
  let mesh: TestMesh | undefined
  afterEach(async () => { await mesh?.stop(); mesh = undefined })

  it('refuses a distribution that lists its source agent among the destinations, naming the agent', async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('seed'), mesh.startAgent('d1')])
    await writeFile(join(mesh.volume('seed'), 'image.raw'), randomBytes(64 * 1024))
    const res = await mesh.api('POST', '/v1/transfers', {
      source: 'agent://seed/vol/image.raw',
      destinations: ['agent://d1/vol/image.raw', 'agent://seed/vol/copy.raw']
    })
    expect(res.status).toBe(400)
    expect(res.body).toMatchObject({ code: 'invalid_argument' })
    expect((res.body as { message: string }).message).toMatch(/destinations\[1\]: agent 'seed' is the source's agent/)
    const list = await mesh.api('GET', '/v1/transfers')
    expect((list.body as { items: unknown[] }).items).toEqual([])
  })

  it('a distribution canceled whole leaves no destination active and no rate or ETA', async () => {
    mesh = await TestMesh.create()
    const m = mesh
    await m.startCoordinator(['--piece-size', String(MiB)])
    // The destination downloads slowly, so that it is still running when canceled.
    await Promise.all([m.startAgent('seed'), m.startAgent('d1', ['--max-download-rate', '1MiB']), m.startAgent('d2', ['--max-download-rate', '1MiB'])])
    await writeFile(join(m.volume('seed'), 'image.raw'), randomBytes(32 * MiB))
    const res = await m.api('POST', '/v1/transfers', { source: 'agent://seed/vol/image.raw', destinations: ['agent://d1/vol/image.raw', 'agent://d2/vol/image.raw'] })
    expect(res.status).toBe(201)
    const id = (res.body as Distribution).id
    await m.until(async () => ((await m.transfer(id)) as unknown as Distribution).destinations.every(d => d.state === 'active' && d.bytesDone > 0), 60_000, 'both destinations under way')
    const canceled = await m.api('POST', `/v1/transfers/${id}/cancel`)
    expect(canceled.status).toBe(200)
    const rec = canceled.body as Distribution
    expect(rec.state).toBe('canceled')
    expect(rec.destinations.map(d => [d.agent, d.state])).toEqual([['d1', 'canceled'], ['d2', 'canceled']])
    expect(rec.progress.rate).toBe(0)
    expect(rec.progress.eta).toBeUndefined()
    // Late progress from the agents must not bring a rate back either.
    const again = (await m.transfer(id)) as unknown as Distribution
    expect(again.destinations.every(d => d.state === 'canceled')).toBe(true)
    expect(again.progress.rate).toBe(0)
  })
})
