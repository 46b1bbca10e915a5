import { Type } from 'typebox'
import { NotFoundError } from '../../mesh/index.ts'
import { InvalidStateError } from '../store-errors.ts'
import type { AgentRecord, TransferRecord } from '../model.ts'
import type { AgentLive } from '../registry.ts'
import type { TransferStore } from '../store.ts'
import { AgentList, AgentNameParams, AgentSchema, errorResponses } from './schemas.ts'
import type { ApiInstance } from './types.ts'

// Queued ones too: they would wait for an agent that is gone.
const UNFINISHED = ['queued', 'scheduled', 'active', 'verifying'] as const

export interface AgentRouteOptions {
  store: TransferStore
  /** Tells the agents still running a transfer that it ended (here: failed because a participant was removed). */
  onCancel?: (rec: TransferRecord) => void
  /** Closes a removed agent's control connection. */
  onAgentRemoved?: (name: string) => void
  /** A connected agent's last heartbeat and free space, kept in memory by the registry. */
  agentLive?: (name: string) => AgentLive | undefined
  /** An agent's current rate, from the throughput the mesh watch counts. */
  agentRate?: (name: string) => { rx: number, tx: number }
}

/** The stored record with what only memory knows: heartbeats are not written to the store, to keep them cheap. */
function withLive (rec: AgentRecord, opts: AgentRouteOptions): AgentRecord & { volumes: Array<{ name: string, readOnly: boolean, free?: number }>, rate?: { rxBytesPerSecond: number, txBytesPerSecond: number } } {
  const live = opts.agentLive?.(rec.name)
  if (live === undefined) return rec
  // Live figures, as the heartbeat's: only for an agent that is connected now.
  const rate = opts.agentRate?.(rec.name)
  return {
    ...rec,
    ...(rate !== undefined ? { rate: { rxBytesPerSecond: Math.round(rate.rx), txBytesPerSecond: Math.round(rate.tx) } } : {}),
    lastSeenAt: live.lastSeenAt,
    volumes: rec.volumes.map(v => live.free !== undefined && Object.hasOwn(live.free, v.name) ? { ...v, free: live.free[v.name] } : v)
  }
}

export function agentRoutes (app: ApiInstance, opts: AgentRouteOptions): void {
  const { store } = opts

  app.get('/v1/agents', {
    schema: { response: { 200: AgentList, ...errorResponses } }
  }, async () => ({ items: store.listAgents().map(a => withLive(a, opts)) }))

  app.get('/v1/agents/:name', {
    schema: { params: AgentNameParams, response: { 200: AgentSchema, ...errorResponses } }
  }, async (req) => {
    const agent = store.getAgent(req.params.name)
    if (agent === undefined) throw new NotFoundError(`no agent named '${req.params.name}'`)
    return withLive(agent, opts)
  })

  app.delete('/v1/agents/:name', {
    config: { role: 'admin' },
    schema: {
      params: AgentNameParams,
      querystring: Type.Object({
        force: Type.Optional(Type.Boolean({ description: 'fail the transfers it takes part in, instead of refusing (409)' }))
      }, { additionalProperties: false }),
      response: { 204: Type.Null(), ...errorResponses }
    }
  }, async (req, reply) => {
    const { name } = req.params
    if (store.getAgent(name) === undefined) throw new NotFoundError(`no agent named '${name}'`)
    const busy = UNFINISHED.flatMap(state => store.inState(state)).filter(rec => rec.agents.includes(name))
    if (busy.length > 0 && req.query.force !== true) {
      throw new InvalidStateError(`agent '${name}' takes part in ${busy.length} unfinished transfer(s) (${busy.slice(0, 5).map(r => r.id).join(', ')}${busy.length > 5 ? ', …' : ''}); wait for them, or force it (force=true; --force on the command line) to fail them`)
    }
    for (const rec of busy) {
      const lastError = { code: 'agent_removed', message: `agent '${name}' was removed`, retryable: false, at: new Date().toISOString(), attempt: rec.attempt }
      opts.onCancel?.(await store.transition(rec.id, 'failed', { lastError }))
    }
    await store.removeAgent(name)
    opts.onAgentRemoved?.(name)
    return await reply.code(204).send(null)
  })
}
