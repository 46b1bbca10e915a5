import { InvalidArgumentError } from '../../mesh/index.ts'
import type { Scheduler } from './contract.ts'
import { fifo } from './fifo.ts'

export type { Decision, Scheduler, SchedulerFactory, SchedulerView } from './contract.ts'
export { fifo } from './fifo.ts'
export type { FifoOptions } from './fifo.ts'
export { defaultExecutor, schedulerView } from './view.ts'
export type { ViewOptions } from './view.ts'

/** Built-in schedulers by name, for `--scheduler <name>`-style configuration. */
export const schedulers: Readonly<Record<string, (opts?: Record<string, unknown>) => Scheduler>> = {
  fifo
}

export function createScheduler (name: string, opts?: Record<string, unknown>): Scheduler {
  const factory = Object.hasOwn(schedulers, name) ? schedulers[name] : undefined
  if (factory === undefined) {
    throw new InvalidArgumentError(`scheduler: unknown '${name}' (known: ${Object.keys(schedulers).join(', ')})`)
  }
  return factory(opts)
}
