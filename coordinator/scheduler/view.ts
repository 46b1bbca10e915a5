import { parseLocation } from '../../mesh/index.ts'
import type { TransferRecord } from '../model.ts'
import type { TransferStore } from '../store.ts'
import type { SchedulerView } from './contract.ts'

const RUNNING = ['scheduled', 'active', 'verifying'] as const

const executors = new WeakMap<TransferRecord, string | null>()

/**
 * The default executor: the destination agent, which pulls; else the
 * destination's `via`; else the source agent, which pushes into a plug-in;
 * else the source's `via`. Parsing two URLs costs microseconds, which over
 * 100,000 queued transfers per tick adds up, so the answer is cached per
 * record object (records are replaced, never mutated, on change).
 */
export function defaultExecutor (rec: TransferRecord): string | undefined {
  let executor = executors.get(rec)
  if (executor === undefined) {
    executor = pickExecutor(rec)
    executors.set(rec, executor)
  }
  return executor ?? undefined
}

function pickExecutor (rec: TransferRecord): string | null {
  const destination = parseLocation(rec.destination, 'destination')
  if (destination.kind === 'agent') return destination.agent
  if (destination.via !== undefined) return destination.via
  const source = parseLocation(rec.source, 'source')
  if (source.kind === 'agent') return source.agent
  return source.via ?? null
}

export interface ViewOptions {
  now?: number
  /** Defaults to the store's agent records. */
  isOnline?: (agent: string) => boolean
  executorFor?: (rec: TransferRecord) => string | undefined
}

/** Builds the scheduler's view from the store's in-memory state. */
export function schedulerView (store: TransferStore, opts: ViewOptions = {}): SchedulerView {
  const activeByAgent = new Map<string, number>()
  let activeTotal = 0
  for (const state of RUNNING) {
    for (const rec of store.inState(state)) {
      activeTotal++
      const agents = new Set(rec.agents)
      if (rec.executor !== undefined) agents.add(rec.executor)
      for (const agent of agents) activeByAgent.set(agent, (activeByAgent.get(agent) ?? 0) + 1)
    }
  }
  return {
    now: opts.now ?? Date.now(),
    // Read only when the scheduler has room to start something: at maxActive it never copies the queue.
    get queued () { return store.queuedInOrder() },
    activeTotal,
    activeByAgent,
    isOnline: opts.isOnline ?? (agent => store.getAgent(agent)?.online === true),
    executorFor: opts.executorFor ?? defaultExecutor
  }
}
