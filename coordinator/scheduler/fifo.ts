import { InvalidArgumentError } from '../../mesh/index.ts'
import type { Decision, Scheduler, SchedulerView } from './contract.ts'

export interface FifoOptions {
  /** Transfers in scheduled, active or verifying at once, over the whole mesh. */
  maxActive?: number
  /** Transfers at once on any one agent (counting every agent a transfer touches). */
  maxPerAgent?: number
}

/**
 * Runs queued transfers in queue order (priority, then age) up to the global
 * and per-agent limits. A transfer that cannot run yet — waiting for its
 * retry time, an agent offline or at its limit — is passed over rather than
 * blocking everything behind it.
 */
export function fifo (opts: FifoOptions = {}): Scheduler {
  const maxActive = opts.maxActive ?? 64
  const maxPerAgent = opts.maxPerAgent ?? 8
  for (const [name, value] of [['maxActive', maxActive], ['maxPerAgent', maxPerAgent]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`fifo: ${name} must be a positive integer`)
  }

  return {
    name: 'fifo',
    decide (view: SchedulerView): Decision[] {
      const decisions: Decision[] = []
      let budget = maxActive - view.activeTotal
      if (budget <= 0) return decisions
      // Only agents that gain work this tick need a count of their own.
      const added = new Map<string, number>()
      // Every agent must be up: a source agent that is down would only turn the attempt into a retry.
      const free = (agent: string): boolean =>
        (view.activeByAgent.get(agent) ?? 0) + (added.get(agent) ?? 0) < maxPerAgent && view.isOnline(agent)
      const take = (agent: string): void => { added.set(agent, (added.get(agent) ?? 0) + 1) }

      for (const rec of view.queued) {
        if (rec.notBefore !== undefined && rec.notBefore > view.now) continue
        // The named agents are checked before asking for the executor: once the
        // mesh is busy, most of a long queue stops here, without that lookup.
        if (!rec.agents.every(free)) continue
        const executor = view.executorFor(rec)
        if (executor === undefined) continue
        const extra = !rec.agents.includes(executor)
        if (extra && !free(executor)) continue
        rec.agents.forEach(take)
        if (extra) take(executor)
        decisions.push({ id: rec.id, executor })
        if (--budget === 0) break
      }
      return decisions
    }
  }
}
