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
  /** Bytes read from sources by this agent's transfers, by the source's protocol (agent, file, http, random …). */
  bytesIn: Record<string, number>
  /** Bytes written to destinations, by protocol. */
  bytesOut: Record<string, number>
  /** Pieces this agent sent to other agents over /staccato/swarm/1. */
  swarmPiecesServed: number
  /** Swarm peers dropped for sending a piece whose sha256 did not match the manifest. */
  swarmPeersDropped: number
  /** Blob bytes the registry mirror sent to its clients. */
  mirrorBytesServed: number
  /** Of those, bytes of blobs still arriving through a distribution: sent piece by piece before the blob committed. */
  mirrorBytesServedArriving: number
}

export function newCounters (): AgentCounters {
  return { bytesServed: 0, bytesReceived: 0, dataRequests: 0, dataRefused: 0, journalCommits: 0, transfersSucceeded: 0, transfersFailed: 0, bytesIn: {}, bytesOut: {}, swarmPiecesServed: 0, swarmPeersDropped: 0, mirrorBytesServed: 0, mirrorBytesServedArriving: 0 }
}

/** Adds a transfer's bytes to the per-protocol totals. */
export function countBytes (totals: Record<string, number>, protocol: string, bytes: number): void {
  // A plug-in's scheme is chosen by whoever wrote it: `constructor` must start from 0, not from Object.prototype's.
  totals[protocol] = (Object.hasOwn(totals, protocol) ? totals[protocol] : 0) + bytes
}
