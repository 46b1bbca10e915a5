import { NotFoundError } from '../../mesh/index.ts'
import type { TransferStore } from '../store.ts'
import { AgentList, AgentNameParams, AgentSchema, errorResponses } from './schemas.ts'
import type { ApiInstance } from './types.ts'

export function agentRoutes (app: ApiInstance, opts: { store: TransferStore }): void {
  const { store } = opts

  app.get('/v1/agents', {
    schema: { response: { 200: AgentList, ...errorResponses } }
  }, async () => ({ items: store.listAgents() }))

  app.get('/v1/agents/:name', {
    schema: { params: AgentNameParams, response: { 200: AgentSchema, ...errorResponses } }
  }, async (req) => {
    const agent = store.getAgent(req.params.name)
    if (agent === undefined) throw new NotFoundError(`no agent named '${req.params.name}'`)
    return agent
  })
}
