import type { AgentRecord } from './model.ts'

/** Enrolled agents; a change of `online` writes an `agent.<name>.online` event with the record. */
export interface AgentDirectory {
  putAgent (rec: AgentRecord, opts?: { now?: number }): Promise<void>
  /** Forgets an agent; an `agent.<name>.removed` event says so. Resolves false if it was unknown. */
  removeAgent (name: string, opts?: { now?: number }): Promise<boolean>
  getAgent (name: string): AgentRecord | undefined
  listAgents (): AgentRecord[]
}
