import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ControlParams } from '../../mesh/index.ts'
import { DistributionManager } from '../../coordinator/distribution.ts'
import type { TransferStore } from '../../coordinator/store.ts'
import type { TransferRecord } from '../../coordinator/model.ts'
import { FakeClock } from './fake-clock.ts'
import { FakeAgents, until } from './fake-agents.ts'
import { agent, tempStore } from './helpers.ts'

const SHA = 'c'.repeat(64)
const manifest = { size: 10, mtime: 1, pieceSize: 1 << 20, sha256: SHA, pieces: [SHA] }

/**
 * The distribution manager (the tracker) alone: a real store on a temporary
 * LevelDB, fake participants, a fake clock. No process, no socket.
 */
describe('distribution manager', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  let store: TransferStore
  let agents: FakeAgents
  let clock: FakeClock
  let manager: DistributionManager
  let logged: Array<{ msg: string, fields?: Record<string, unknown>, level?: string }>

  beforeEach(async () => {
    h = await tempStore()
    store = h.store
    agents = new FakeAgents()
    clock = new FakeClock(Date.now())
    for (const name of ['a', 'b', 'c']) {
      await store.putAgent(agent(name))
      agents.online.add(name)
    }
    agents.answer = async (_agent, method) => method === 'swarmManifest' ? manifest : { joined: true }
    logged = []
    const log = (msg: string, fields?: Record<string, unknown>, level?: string): void => { logged.push({ msg, fields, level }) }
    manager = new DistributionManager({ store, agents, clock, key: await generateKeyPair('Ed25519'), log, pieceSize: 1 << 20, peersPerParticipant: 8, ticketTtlSeconds: 60 })
  })
  afterEach(async () => { await h.cleanup() })

  /** A distribution from a to b and c, scheduled on its seed. */
  async function scheduled (): Promise<TransferRecord> {
    const { record } = await store.create({ source: 'agent://a/images/x.img', destinations: ['agent://b/images/x.img', 'agent://c/images/x.img'] }, { tenant: 't' })
    return await store.transition(record.id, 'scheduled', { executor: 'a', attempt: 1 })
  }

  const report = (rec: TransferRecord, agent: string, outcome: 'succeeded' | 'failed'): ControlParams<'swarmReport'> => ({
    distributionId: rec.id, destination: `agent://${agent}/images/x.img`, outcome, ...(outcome === 'succeeded' ? { sha256: SHA } : { error: { code: 'network', message: 'x', retryable: false } })
  })

  it('asks the seed for the manifest, then brings every participant in with its role, the seed among its peers, and a ticket', async () => {
    const rec = await scheduled()
    await manager.start(rec)
    expect(agents.sentTo('a', 'swarmManifest')).toEqual([{ distributionId: rec.id, source: rec.source, pieceSize: 1 << 20 }])
    const now = store.get(rec.id) as TransferRecord
    expect(now).toMatchObject({ state: 'active', manifest })
    expect(now.destinations?.map(d => d.state)).toEqual(['active', 'active'])
    expect(agents.sentTo('a', 'swarmJoin')).toEqual([expect.objectContaining({ role: 'seed', manifest })])
    for (const d of ['b', 'c']) {
      const [join] = agents.sentTo(d, 'swarmJoin') as Array<ControlParams<'swarmJoin'>>
      expect(join).toMatchObject({ role: 'destination', destination: `agent://${d}/images/x.img`, ticket: expect.any(String) })
      expect(join.peers.map(p => p.name)).toContain('a')
    }
  })

  it('ends the distribution once every destination reported: failed if one failed, everyone told to leave', async () => {
    const rec = await scheduled()
    await manager.start(rec)
    await manager.handlers.swarmReport(report(rec, 'b', 'succeeded'), { agent: 'b' })
    expect(store.get(rec.id)?.state).toBe('active')
    await manager.handlers.swarmReport(report(rec, 'c', 'failed'), { agent: 'c' })
    expect(store.get(rec.id)).toMatchObject({ state: 'failed', lastError: { code: 'network' } })
    expect(agents.sentTo('c', 'swarmLeave')).toContainEqual({ distributionId: rec.id, removePartial: true })
    expect(agents.sentTo('b', 'swarmLeave')).toEqual([{ distributionId: rec.id, removePartial: false }])
    expect(agents.sentTo('a', 'swarmLeave')).toEqual([{ distributionId: rec.id, removePartial: false }])
  })

  it('names a destination that comes back the destinations that finished (they still serve), and tells them of it', async () => {
    const rec = await scheduled()
    await manager.start(rec)
    await manager.handlers.swarmReport(report(rec, 'b', 'succeeded'), { agent: 'b' })
    const joinsOfB = agents.sentTo('b', 'swarmJoin').length
    // c restarts (SIGKILL) after b finished: it rejoins and should fetch from b as well as from the seed.
    manager.onAgentOnline('c')
    await until(() => agents.sentTo('b', 'swarmJoin').length > joinsOfB, 'b to be told of c')
    const joins = agents.sentTo('c', 'swarmJoin') as Array<ControlParams<'swarmJoin'>>
    expect(joins.at(-1)?.peers.map(p => p.name).sort()).toEqual(['a', 'b'])
    const toB = agents.sentTo('b', 'swarmJoin').at(-1) as ControlParams<'swarmJoin'>
    expect(toB.peers.map(p => p.name)).toContain('c')
  })

  it('fails every open destination when the seed can no longer read the source', async () => {
    const rec = await scheduled()
    await manager.start(rec)
    await manager.handlers.swarmReport({ distributionId: rec.id, outcome: 'failed', error: { code: 'source_changed', message: 'changed', retryable: false } }, { agent: 'a' })
    const now = store.get(rec.id) as TransferRecord
    expect(now.state).toBe('failed')
    expect(now.destinations?.map(d => [d.state, d.lastError?.code])).toEqual([['failed', 'source_changed'], ['failed', 'source_changed']])
    // Only the seed speaks for the source: a destination saying so changes nothing.
    const other = await scheduled()
    await manager.start(other)
    await manager.handlers.swarmReport({ distributionId: other.id, outcome: 'failed', error: { code: 'source_changed', message: 'changed', retryable: false } }, { agent: 'b' })
    expect(store.get(other.id)?.state).toBe('active')
  })

  it('logs a progress report the store refused, rather than dropping it without a word', async () => {
    const rec = await scheduled()
    await manager.start(rec)
    await manager.handlers.swarmProgress({ distributionId: rec.id, destination: 'agent://b/images/x.img', bytesDone: -5 }, { agent: 'b' })
    await until(() => logged.some(l => l.msg === 'could not record distribution progress'), 'the refused write to be logged')
    expect(logged.find(l => l.msg === 'could not record distribution progress')).toMatchObject({ level: 'warn', fields: { transferId: rec.id, agent: 'b', code: 'invalid_argument' } })
  })

  it('stamps what it records with its clock', async () => {
    const rec = await scheduled()
    await manager.start(rec)
    await clock.advance(60_000)
    await manager.handlers.swarmReport(report(rec, 'b', 'failed'), { agent: 'b' })
    const dest = store.get(rec.id)?.destinations?.find(d => d.agent === 'b')
    expect(Date.parse(dest?.lastError?.at ?? '')).toBe(clock.now())
    expect(Date.parse(dest?.updatedAt ?? '')).toBe(clock.now())
  })
  it('a tree: each destination counts its files, the record adds them up, and the files are listed once', async () => {
    const tree = {
      files: [
        { path: 'a/one.bin', size: 6, offset: 0, mode: 0o644, mtime: 1, sha256: SHA },
        { path: 'two.bin', size: 4, offset: 6, mode: 0o600, mtime: 1, sha256: SHA }
      ],
      dirs: [{ path: 'a', mode: 0o755 }],
      skipped: [{ path: 'link', reason: 'symbolic link (not followed)' }]
    }
    agents.answer = async (_agent, method) => method === 'swarmManifest' ? { ...manifest, tree } : { joined: true }
    const { record } = await store.create({ source: 'agent://a/images/dataset/', destinations: ['agent://b/images/copy/', 'agent://c/images/copy/'], exclude: ['*.tmp'] }, { tenant: 't' })
    const rec = await store.transition(record.id, 'scheduled', { executor: 'a', attempt: 1 })
    await manager.start(rec)
    // The seed is asked for a tree manifest, with the globs.
    expect(agents.sentTo('a', 'swarmManifest')).toEqual([{ distributionId: rec.id, source: rec.source, pieceSize: 1 << 20, tree: { exclude: ['*.tmp'] } }])
    const fresh = { total: 3, done: 0, skipped: 1, failed: 0 }
    expect(store.get(rec.id)?.destinations?.map(d => d.files)).toEqual([fresh, fresh])
    expect(store.get(rec.id)?.progress.files).toEqual({ total: 6, done: 0, skipped: 2, failed: 0 })

    manager.handlers.swarmProgress({ distributionId: rec.id, destination: 'agent://c/images/copy/', bytesDone: 6, filesDone: 1 }, { agent: 'c' })
    await until(() => store.get(rec.id)?.destinations?.[1].files?.done === 1, 'c\'s count of files placed')
    expect(store.get(rec.id)?.progress.files).toEqual({ total: 6, done: 1, skipped: 2, failed: 0 })

    const dest = (agent: string): string => `agent://${agent}/images/copy/`
    await manager.handlers.swarmReport({ ...report(rec, 'b', 'succeeded'), destination: dest('b') }, { agent: 'b' })
    expect(store.get(rec.id)?.progress.files).toEqual({ total: 6, done: 3, skipped: 2, failed: 0 })
    await manager.handlers.swarmReport({ ...report(rec, 'c', 'failed'), destination: dest('c') }, { agent: 'c' })
    const done = store.get(rec.id) as TransferRecord
    expect(done.state).toBe('failed')
    // c placed one file of two before it failed.
    expect(done.destinations?.map(d => [d.agent, d.files])).toEqual([['b', { total: 3, done: 2, skipped: 1, failed: 0 }], ['c', { total: 3, done: 1, skipped: 1, failed: 1 }]])
    expect(done.progress.files).toEqual({ total: 6, done: 3, skipped: 2, failed: 1 })
    // Listed once for the whole distribution: b placed every file, so each is done; the link skipped with its reason.
    const page = await store.listTreeFiles(rec.id, { limit: 10 })
    expect(page.items.map(f => [f.path, f.state])).toEqual([['a/one.bin', 'done'], ['link', 'skipped'], ['two.bin', 'done']])
  })
})
