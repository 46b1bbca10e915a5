/** Monotonic counters an agent exposes on its status endpoint (and to tests that must not rely on timing). */
export interface AgentCounters {
  /** Bytes sent to other agents over /staccato/data/1. */
  bytesServed: number
  /** Bytes written to destinations by this agent's transfers. */
  bytesReceived: number
  dataRequests: number
  /** Data requests refused (bad ticket, path outside a volume, malformed header…). */
  dataRefused: number
  journalCommits: number
  transfersSucceeded: number
  transfersFailed: number
}

export function newCounters (): AgentCounters {
  return { bytesServed: 0, bytesReceived: 0, dataRequests: 0, dataRefused: 0, journalCommits: 0, transfersSucceeded: 0, transfersFailed: 0 }
}
