import type { TransferRecord } from '../model.ts'

/**
 * What a scheduler plug-in sees on one tick. It is a snapshot: the plug-in
 * decides, and the caller applies the decisions (queued → scheduled) and
 * dispatches them. A plug-in moves no bytes and writes nothing.
 */
export interface SchedulerView {
  /** Epoch ms; compare with `notBefore`. */
  now: number
  /** Queued transfers by priority (highest first), then creation order. */
  queued: readonly TransferRecord[]
  /** Transfers in scheduled, active or verifying. */
  activeTotal: number
  /** Per agent: transfers in scheduled, active or verifying that touch it (as executor or in `agents`). */
  activeByAgent: ReadonlyMap<string, number>
  isOnline (agent: string): boolean
  /** The agent that would run this transfer, or undefined when none can. */
  executorFor (rec: TransferRecord): string | undefined
}

export interface Decision {
  id: string
  executor: string
}

export interface Scheduler {
  readonly name: string
  /** Pure: the same view gives the same decisions. Must stay fast with 100,000 queued transfers. */
  decide (view: SchedulerView): Decision[]
}

export type SchedulerFactory<Options = Record<string, unknown>> = (opts?: Options) => Scheduler
