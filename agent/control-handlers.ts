import { errorFields, toStaccatoError } from '../mesh/index.ts'
import type { ControlHandlers, CoordinatorToAgent } from '../mesh/index.ts'
import type { Executor } from './executor.ts'
import type { SwarmService } from './swarm/service.ts'

/** Everything the coordinator may send an agent, one handler each (the agent's control table). */
export type AgentHandlers = ControlHandlers<CoordinatorToAgent, undefined>
type Log = (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void

/** Transfers: run a job, stop one. */
export function executorHandlers (executor: Executor): Pick<AgentHandlers, 'execute' | 'cancel'> {
  return {
    execute: async job => {
      await executor.accept(job)
      return { accepted: true }
    },
    cancel: async ({ transferId }) => { await executor.cancel(transferId) }
  }
}

/** Distributions: hash a source, join, leave. */
export function swarmHandlers (swarm: SwarmService, log: Log): Pick<AgentHandlers, 'swarmManifest' | 'swarmJoin' | 'swarmLeave'> {
  return {
    swarmManifest: async p => await swarm.manifest(p),
    swarmJoin: async p => {
      await swarm.join(p)
      return { joined: true }
    },
    swarmLeave: async ({ distributionId, removePartial }) => {
      // A cast: the coordinator is not waiting for this, so its failure ends here, in the log.
      await swarm.leave(distributionId, removePartial).catch(err => { log('could not leave a distribution', { distributionId, ...errorFields(toStaccatoError(err)) }, 'warn') })
    }
  }
}
