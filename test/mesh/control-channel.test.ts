import { streamPair } from '@libp2p/utils'
import { describe, expect, it } from 'vitest'
import { AGENT_SIDE, COORDINATOR_SIDE, ControlChannel, PermissionDeniedError, WIRE_VERSION, encodeFrame, send } from '../../mesh/index.ts'
import type { AgentToCoordinator, ControlHandlers, ControlParams, CoordinatorToAgent, StaccatoError } from '../../mesh/index.ts'

const SHA = 'a'.repeat(64)
const manifest = { size: 1, mtime: 1, pieceSize: 65536, sha256: SHA, pieces: [SHA] }
const job: ControlParams<'execute'> = { transferId: 'tr_1', attempt: 1, source: 'agent://a/v/x', destination: 'agent://b/v/x' }

type AgentEnd = ControlChannel<AgentToCoordinator, CoordinatorToAgent>
type CoordinatorEnd = ControlChannel<CoordinatorToAgent, AgentToCoordinator, { peer: string }>

/** What the agent end got, by method. */
interface Seen { method: string, params: unknown }

/**
 * The control channel on its own, over an in-memory stream pair (no sockets,
 * no processes): both tables, the schema checks both ways, the gate, and
 * what a bad message costs.
 */
async function pair (opts: { gate?: (method: string) => void, agent?: Partial<ControlHandlers<CoordinatorToAgent, undefined>> } = {}) {
  const [a, b] = await streamPair()
  const seen: Seen[] = []
  const internal: Array<{ method: string, err: StaccatoError }> = []
  const note = (method: string) => async (params: unknown): Promise<void> => { seen.push({ method, params }) }
  const agentHandlers: ControlHandlers<CoordinatorToAgent, undefined> = {
    execute: async p => { seen.push({ method: 'execute', params: p }); return { accepted: true } },
    swarmManifest: async () => manifest,
    swarmJoin: async () => ({ joined: true }),
    cancel: note('cancel'),
    swarmLeave: note('swarmLeave'),
    ...opts.agent
  }
  const coordinatorHandlers: ControlHandlers<AgentToCoordinator, { peer: string }> = {
    register: async p => ({ heartbeatMs: 1000, settled: (p.outcomes ?? []).map(o => o.transferId) }),
    report: async (p, ctx) => { seen.push({ method: `report from ${ctx.peer}`, params: p }); return {} },
    swarmReport: async () => ({}),
    treeFiles: async () => ({}),
    heartbeat: async (p, ctx) => { seen.push({ method: `heartbeat from ${ctx.peer}`, params: p }) },
    progress: async () => { throw new TypeError('a bug in a cast handler') },
    swarmProgress: note('swarmProgress'),
    imageWant: async () => ({ self: true }),
    swarmStats: note('swarmStats')
  }
  const agent: AgentEnd = new ControlChannel(a, AGENT_SIDE, {
    table: { handlers: agentHandlers, context: () => undefined },
    onInternalError: (method, err) => { internal.push({ method, err }) }
  })
  const coordinator: CoordinatorEnd = new ControlChannel(b, COORDINATOR_SIDE, {
    table: {
      handlers: coordinatorHandlers,
      context: method => {
        opts.gate?.(method)
        return { peer: 'agent-a' }
      }
    },
    onInternalError: (method, err) => { internal.push({ method, err }) }
  })
  return { agent, coordinator, seen, internal, raw: { agent: a, coordinator: b } }
}

async function until (check: () => boolean, what: string): Promise<void> {
  // Bounded: an in-memory pair delivers within a few turns of the event loop.
  for (let i = 0; i < 1000 && !check(); i++) await new Promise(resolve => setImmediate(resolve))
  if (!check()) throw new Error(`never happened: ${what}`)
}

describe('control channel: one typed table per side', () => {
  it('answers a call from the table of the direction it receives, with the reply checked and typed', async () => {
    const { agent, coordinator, seen } = await pair()
    const reply = await agent.call('register', { name: 'a', version: '1', volumes: [], plugins: [], addrs: [], active: [], outcomes: [{ transferId: 'tr_9', attempt: 1, outcome: 'failed' }] })
    expect(reply).toEqual({ heartbeatMs: 1000, settled: ['tr_9'] })
    expect(await coordinator.call('execute', job)).toEqual({ accepted: true })
    expect(await coordinator.call('swarmManifest', { distributionId: 'tr_2', source: 'agent://a/v/x', pieceSize: 65536 })).toEqual(manifest)
    expect(seen).toEqual([{ method: 'execute', params: job }])
    agent.close()
    await coordinator.closed
  })

  it('runs casts without answering, with the context the side gives each message', async () => {
    const { agent, coordinator, seen } = await pair()
    await agent.cast('heartbeat', { active: ['tr_1'] })
    await coordinator.cast('cancel', { transferId: 'tr_1' })
    await until(() => seen.length === 2, 'both casts')
    expect(seen).toEqual(expect.arrayContaining([
      { method: 'heartbeat from agent-a', params: { active: ['tr_1'] } },
      { method: 'cancel', params: { transferId: 'tr_1' } }
    ]))
    agent.close()
  })

  it('refuses through the side\'s gate before the handler runs: a call gets the error, a cast is dropped', async () => {
    const { agent, seen } = await pair({ gate: method => { if (method !== 'register') throw new PermissionDeniedError(`'${method}' before 'register'`) } })
    await expect(agent.call('report', { transferId: 'tr_1', attempt: 1, outcome: 'failed' })).rejects.toMatchObject({ code: 'permission_denied' })
    await agent.cast('heartbeat', { active: [] })
    // The channel is still up: a call after the dropped cast is answered.
    await expect(agent.call('report', { transferId: 'tr_1', attempt: 1, outcome: 'failed' })).rejects.toMatchObject({ code: 'permission_denied' })
    expect(seen).toEqual([])
    agent.close()
  })

  it('answers a cast method sent as a call with unsupported, and keeps the channel', async () => {
    const { agent } = await pair()
    const untyped = agent.call.bind(agent) as (method: string, params: unknown) => Promise<unknown>
    await expect(untyped('heartbeat', { active: [] })).rejects.toMatchObject({ code: 'unsupported' })
    expect(await agent.call('report', { transferId: 'tr_1', attempt: 1, outcome: 'failed' })).toEqual({})
    agent.close()
  })

  it('ends the channel on a method of the other direction, or parameters its schema refuses', async () => {
    for (const message of [
      { v: WIRE_VERSION, kind: 'call', id: 1, method: 'execute', params: job },
      { v: WIRE_VERSION, kind: 'cast', method: 'progress', params: { transferId: 'tr_1', attempt: 1, bytesDone: -1 } }
    ]) {
      const { coordinator, raw } = await pair()
      await send(raw.agent, encodeFrame(message))
      expect(await coordinator.closed).toMatchObject({ code: 'protocol_error' })
    }
  })

  it('fails only the call whose reply does not match its schema', async () => {
    const { agent, coordinator } = await pair({ agent: { swarmManifest: async () => ({ ...manifest, sha256: 'not hex' }) } })
    await expect(coordinator.call('swarmManifest', { distributionId: 'tr_2', source: 'agent://a/v/x', pieceSize: 65536 })).rejects.toMatchObject({ code: 'protocol_error', message: expect.stringMatching(/swarmManifest reply/) })
    expect(await coordinator.call('swarmJoin', { distributionId: 'tr_2', role: 'seed', source: 'agent://a/v/x', manifest, peers: [], ticket: 't' })).toEqual({ joined: true })
    agent.close()
  })

  it('reports a bug in a cast handler where it happened, and tells the peer nothing', async () => {
    const { agent, internal } = await pair()
    await agent.cast('progress', { transferId: 'tr_1', attempt: 1, bytesDone: 1 })
    await until(() => internal.length === 1, 'the bug to be reported')
    expect(internal[0]).toMatchObject({ method: 'progress', err: { code: 'internal' } })
    expect(await agent.call('report', { transferId: 'tr_1', attempt: 1, outcome: 'failed' })).toEqual({})
    agent.close()
  })
})
