import type { Connection, Stream } from '@libp2p/interface'
import { streamPair } from '@libp2p/utils'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { AGENT_SIDE, ControlChannel } from '../../mesh/index.ts'
import type { AgentToCoordinator, ControlParams, CoordinatorToAgent, MeshNode } from '../../mesh/index.ts'
import { AgentRegistry } from '../../coordinator/registry.ts'
import type { AgentLifecycle, PartHandlers } from '../../coordinator/registry.ts'
import { AgentSessions } from '../../coordinator/agent-sessions.ts'
import type { TransferStore } from '../../coordinator/store.ts'
import { FakeClock } from './fake-clock.ts'
import { until } from './fake-agents.ts'
import { tempStore } from './helpers.ts'

const JOIN = 'stj_good'

/**
 * The registry alone: a real store on a temporary LevelDB, agents on
 * in-memory stream pairs instead of libp2p connections, a fake clock for
 * heartbeat timeouts, and fakes of the parts it hands messages to.
 */
describe('agent registry', () => {
  let h: Awaited<ReturnType<typeof tempStore>>
  let store: TransferStore
  let clock: FakeClock
  let sessions: AgentSessions
  let registry: AgentRegistry
  let accept: (stream: Stream, connection: Connection) => void
  /** Whether this registry is the leader of replicas (it takes registrations). */
  let leading = true
  const events: string[] = []
  const reports: Array<{ agent: string, transferId: string }> = []
  const channels: Array<ControlChannel<AgentToCoordinator, CoordinatorToAgent>> = []

  beforeEach(async () => {
    h = await tempStore()
    store = h.store
    clock = new FakeClock(Date.now())
    leading = true
    sessions = new AgentSessions(clock)
    events.length = 0
    reports.length = 0
    const lifecycle: AgentLifecycle = {
      onRegister: async agent => { events.push(`register ${agent}`); return [] },
      onOnline: agent => { events.push(`online ${agent}`) },
      onOffline: async agent => { events.push(`offline ${agent}`) }
    }
    const handlers: PartHandlers = {
      report: async (r, { agent }) => { reports.push({ agent, transferId: r.transferId }); return {} },
      swarmReport: async () => ({}),
      treeFiles: async () => ({}),
      progress: async () => {},
      swarmProgress: async () => {},
      imageWant: async () => ({ self: true }),
      swarmStats: async () => {}
    }
    // A node that only hands over the handler: the tests connect agents themselves.
    const node = { handle: async (_protocol: string, handler: typeof accept) => { accept = handler } } as unknown as MeshNode
    registry = new AgentRegistry({
      node, store, sessions, clock, lifecycle, handlers, heartbeatMs: 1000, heartbeatTimeoutMs: 3000, log: () => {}, accepting: () => leading,
      admit: async token => token === JOIN ? { ok: true } : { ok: false, reason: 'unknown token' }
    })
    await registry.start()
  })
  afterEach(async () => {
    for (const c of channels.splice(0)) c.close()
    registry.stop()
    await h.cleanup()
  })

  async function connect (peerId: string): Promise<ControlChannel<AgentToCoordinator, CoordinatorToAgent>> {
    const [mine, theirs] = await streamPair()
    accept(theirs, { remotePeer: { toString: () => peerId } } as unknown as Connection)
    const channel = new ControlChannel(mine, AGENT_SIDE)
    channels.push(channel)
    return channel
  }

  function registration (name: string, joinToken?: string): ControlParams<'register'> {
    return { name, version: '1', volumes: [{ name: 'vol', readOnly: false }], plugins: ['agent'], addrs: [], active: [], ...(joinToken !== undefined ? { joinToken } : {}) }
  }

  it('admits an agent with a good join token, settles it before it is online, and hands its calls to the parts', async () => {
    const channel = await connect('peer-a')
    await expect(channel.call('report', { transferId: 'tr_1', attempt: 1, outcome: 'failed' })).rejects.toMatchObject({ code: 'permission_denied' })
    await expect(channel.call('register', registration('a', 'stj_bad'))).rejects.toMatchObject({ code: 'permission_denied' })
    expect(await channel.call('register', registration('a', JOIN))).toEqual({ heartbeatMs: 1000, settled: [] })
    expect(events).toEqual(['register a', 'online a'])
    expect(registry.isOnline('a')).toBe(true)
    expect(store.getAgent('a')).toMatchObject({ online: true, peerId: 'peer-a' })
    expect(await channel.call('report', { transferId: 'tr_1', attempt: 1, outcome: 'failed' })).toEqual({})
    expect(reports).toEqual([{ agent: 'a', transferId: 'tr_1' }])
  })

  it('as a replica that does not lead, refuses registration as retryable; resigning closes sessions without taking agents offline; leading takes stale ones offline', async () => {
    leading = false
    await expect((await connect('peer-a')).call('register', registration('a', JOIN))).rejects.toMatchObject({ code: 'unavailable' })
    expect(store.getAgent('a')).toBeUndefined()
    leading = true
    const channel = await connect('peer-a')
    await channel.call('register', registration('a', JOIN))
    registry.resign()
    expect(await channel.closed).toBeUndefined()
    expect(registry.isOnline('a')).toBe(false)
    // The new leader owns the record now: the old one writes nothing.
    expect(events).not.toContain('offline a')
    expect(store.getAgent('a')?.online).toBe(true)
    await registry.lead()
    expect(store.getAgent('a')?.online).toBe(false)
  })

  it('refuses another key claiming an enrolled name, whatever its token', async () => {
    await (await connect('peer-a')).call('register', registration('a', JOIN))
    const impostor = await connect('peer-x')
    await expect(impostor.call('register', registration('a', JOIN))).rejects.toMatchObject({ code: 'permission_denied', message: "agent name 'a' is enrolled with another key" })
    expect(store.getAgent('a')?.peerId).toBe('peer-a')
  })

  it('keeps an agent that heartbeats, and takes one that falls silent offline after the timeout, in virtual time', async () => {
    const channel = await connect('peer-a')
    await channel.call('register', registration('a', JOIN))
    for (let s = 0; s < 5; s++) {
      await channel.cast('heartbeat', { active: [], volumes: [{ name: 'vol', free: 42 }] })
      await until(() => Date.parse(registry.live('a')?.lastSeenAt ?? '') === clock.now(), 'the heartbeat to be noted')
      await clock.advance(1000)
    }
    expect(registry.isOnline('a')).toBe(true)
    expect(registry.live('a')?.free).toEqual({ vol: 42 })
    expect(events).not.toContain('offline a')
    // Silent for longer than the 3 s timeout: the next liveness check (once a second) takes it offline.
    await clock.advance(4000)
    await until(() => events.includes('offline a'), 'the silent agent to go offline')
    expect(registry.isOnline('a')).toBe(false)
    expect(store.getAgent('a')?.online).toBe(false)
  })
})
