import type { ChecksumMode, ErrorInfo, FileCounts, ImageManifest, Overwrite, TreeManifest, TreeOptions } from '../mesh/index.ts'

export type TransferState = 'queued' | 'scheduled' | 'active' | 'verifying' | 'succeeded' | 'failed' | 'canceled'

export const TRANSFER_STATES: readonly TransferState[] = ['queued', 'scheduled', 'active', 'verifying', 'succeeded', 'failed', 'canceled']
export const TERMINAL_STATES: ReadonlySet<TransferState> = new Set(['succeeded', 'failed', 'canceled'])

/** The state machine: every change a store accepts is one of these edges. */
export const TRANSITIONS: Readonly<Record<TransferState, readonly TransferState[]>> = {
  queued: ['scheduled', 'canceled', 'failed'],
  // scheduled → queued when dispatch could not reach the agent.
  scheduled: ['active', 'queued', 'failed', 'canceled'],
  // active → queued on a retryable error (with a retry delay).
  active: ['verifying', 'queued', 'failed', 'canceled'],
  // verifying → queued when a checksum mismatch earns one retry from zero.
  verifying: ['succeeded', 'queued', 'failed', 'canceled'],
  succeeded: [],
  failed: [],
  canceled: []
}

export function canTransition (from: TransferState, to: TransferState): boolean {
  return TRANSITIONS[from].includes(to)
}

export interface Progress {
  bytesDone: number
  bytesTotal?: number
  /** Bytes per second over the last report interval. */
  rate: number
  /** Seconds to completion at the current rate, when the total is known. */
  eta?: number
  /** A tree transfer's files so far. */
  files?: FileCounts
  updatedAt: string
}

export type { FileCounts }

export interface TransferError extends ErrorInfo {
  at: string
  attempt: number
}

/** One destination of a distribution (one source, many destinations sharing pieces). */
export interface DestinationStatus {
  destination: string
  agent: string
  state: 'queued' | 'active' | 'succeeded' | 'failed' | 'canceled'
  bytesDone: number
  sha256?: string
  lastError?: ErrorInfo & { at: string }
  /** A tree distribution: this destination's files (total and skipped from the manifest, done as it places them). */
  files?: FileCounts
  updatedAt: string
}

/** The source's manifest: piece size, every piece's sha256 and the whole object's. */
export interface DistributionManifest {
  size: number
  mtime: number
  pieceSize: number
  sha256: string
  pieces: string[]
  /** An image distribution: its blobs (laid end to end, they are the object the pieces cut) and manifest. */
  image?: ImageManifest
  /** A tree distribution: its file table (the files laid end to end are the object the pieces cut). */
  tree?: TreeManifest
}

export interface WaitingReason {
  reason: 'agent_offline'
  agent: string
  /** When the agent was last seen. */
  since: string
}

export interface TransferRecord {
  id: string
  tenant: string
  state: TransferState
  source: string
  /** For a distribution, its first destination; every destination is in `destinations`. */
  destination: string
  /** Present for a distribution: each destination's state and progress. */
  destinations?: DestinationStatus[]
  manifest?: DistributionManifest
  checksum?: { algorithm: 'sha256', value: string }
  /** The end-to-end checksum the agents compute (sha256 when absent). */
  checksumMode?: ChecksumMode
  /** What to do when the destination exists (always when absent). */
  overwrite?: Overwrite
  /** Data streams the transfer's bytes are split across (the executing agent's default when absent). */
  streams?: number
  /** A tree transfer's (the source ends in /) sync level and globs. */
  tree?: TreeOptions
  /** Higher runs first. */
  priority: number
  /** How many times a retryable failure is retried before the transfer fails. */
  retries: number
  labels: Record<string, string>
  /** Agents named by the source or destination (for filtering and per-agent limits). */
  agents: string[]
  /** The agent that runs the transfer, chosen at scheduling time. */
  executor?: string
  /** Attempts started so far. */
  attempt: number
  /** A queued transfer waits until this time (epoch ms) after a retryable failure. */
  notBefore?: number
  /** Why a queued transfer cannot start: set and cleared by the dispatcher, gone once it leaves the queue. */
  waiting?: WaitingReason
  progress: Progress
  lastError?: TransferError
  /** Hex sha256 of the delivered object, once verified (checksum mode sha256). */
  sha256?: string
  /** Hex blake3 of the delivered object, once verified (checksum mode blake3). */
  blake3?: string
  /** Every event of this transfer is also delivered here, signed like a webhook. */
  callbackUrl?: string
  createdAt: string
  updatedAt: string
  startedAt?: string
  finishedAt?: string
}

export interface TransferInput {
  source: string
  /** One destination… */
  destination?: string
  /** …or several agent:// destinations: a distribution. */
  destinations?: string[]
  checksum?: { algorithm: 'sha256', value: string }
  checksumMode?: string
  overwrite?: string
  streams?: number
  sync?: string
  include?: string[]
  exclude?: string[]
  /** A tree: remove what the destination holds and the source does not. */
  deleteExtra?: boolean
  /** A tree: list what would change, change nothing. */
  dryRun?: boolean
  /** A tree: `copy` makes symbolic links whose target stays inside the tree links at the destination; `skip` (the default) lists every link as skipped. */
  links?: string
  priority?: number
  retries?: number
  labels?: Record<string, string>
  callbackUrl?: string
}

export interface AgentRecord {
  name: string
  peerId: string
  addrs: string[]
  volumes: Array<{ name: string, readOnly: boolean }>
  plugins: string[]
  /** What the agent said it is labelled (`--label`); absent when it said nothing. */
  labels?: Record<string, string>
  version: string
  online: boolean
  enrolledAt: string
  lastSeenAt: string
}

/** One entry of the coordinator's event log, read by the change feed, the live stream and webhooks. */
export interface StoreEvent {
  /** Strictly increasing; it may skip numbers (after an OS crash it jumps past the synced reservation). */
  seq: number
  /** Unique and stable: the message id a webhook receiver deduplicates on. */
  id: string
  time: string
  /** `transfer.<id>.state`, `.progress`, `.stalled`, `.waiting`, `.deleted`; `agent.<name>.online`. */
  topic: string
  /** The tenant allowed to see it; `*` for admin-only events (agents). */
  tenant: string
  data: Record<string, unknown>
}
