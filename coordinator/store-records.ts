import { TERMINAL_STATES } from './model.ts'
import type { TransferRecord, TransferState } from './model.ts'
import type { PreparedInput } from './store-input.ts'
import { nextProgress, restartProgress } from './store-progress.ts'
import type { ProgressReport } from './store-progress.ts'

/**
 * What a write does to a transfer record, apart from where it is stored: the
 * LevelDB and PostgreSQL stores compute every new record here, so the two
 * can differ only in how they write it.
 */

const OPEN_DESTINATION: ReadonlySet<string> = new Set(['queued', 'active'])

/** Fields a transition patch may not change. */
const FIXED = ['id', 'tenant', 'state', 'source', 'destination', 'agents', 'createdAt'] as const

export function newRecord (prepared: PreparedInput, id: string, tenant: string, now: number): TransferRecord {
  const at = new Date(now).toISOString()
  const record: TransferRecord = {
    id,
    tenant,
    state: 'queued',
    source: prepared.source,
    destination: prepared.destination,
    priority: prepared.priority,
    retries: prepared.retries,
    labels: prepared.labels,
    agents: prepared.agents,
    attempt: 0,
    progress: { bytesDone: 0, rate: 0, updatedAt: at },
    createdAt: at,
    updatedAt: at
  }
  if (prepared.checksum !== undefined) record.checksum = prepared.checksum
  if (prepared.checksumMode !== undefined) record.checksumMode = prepared.checksumMode
  if (prepared.overwrite !== undefined) record.overwrite = prepared.overwrite
  if (prepared.streams !== undefined) record.streams = prepared.streams
  if (prepared.tree !== undefined) record.tree = prepared.tree
  if (prepared.callbackUrl !== undefined) record.callbackUrl = prepared.callbackUrl
  if (prepared.destinations !== undefined) {
    record.destinations = prepared.destinations.map(destination => ({
      destination, agent: new URL(destination).hostname, state: 'queued', bytesDone: 0, updatedAt: at
    }))
  }
  return record
}

/** The record after a state change (already checked to be allowed), and its event's data. */
export function transitioned (prev: TransferRecord, to: TransferState, patch: Partial<TransferRecord>, now: number): { record: TransferRecord, data: Record<string, unknown> } {
  const at = new Date(now).toISOString()
  const record = withoutUndefined({ ...prev, ...patch })
  for (const field of FIXED) (record as unknown as Record<string, unknown>)[field] = prev[field]
  record.state = to
  record.updatedAt = at
  if (to === 'active' && prev.startedAt === undefined) record.startedAt = at
  // Only a queued transfer waits; the dispatcher says again why if it comes back to the queue.
  if (to !== 'queued') delete record.waiting
  if (TERMINAL_STATES.has(to)) {
    record.finishedAt = at
    // Nothing moves any more: a rate or ETA left from the last report would read as a transfer still running.
    record.progress = { ...record.progress, rate: 0 }
    delete record.progress.eta
    // A destination still open when its distribution ends (canceled whole, failed) ends with it.
    if (record.destinations !== undefined) {
      const closed = to === 'failed' ? 'failed' : 'canceled'
      record.destinations = record.destinations.map(d => OPEN_DESTINATION.has(d.state) ? { ...d, state: closed, updatedAt: at } : d)
    }
  }
  // A new attempt (or a wait in the queue) must not average its rate with the previous run.
  if ((to === 'active' || to === 'queued') && patch.progress === undefined) record.progress = restartProgress(record.progress, now)
  const data: Record<string, unknown> = { from: prev.state, to, attempt: record.attempt }
  if (patch.lastError !== undefined) data.error = patch.lastError
  return { record, data }
}

export function updated (prev: TransferRecord, patch: Pick<Partial<TransferRecord>, 'destinations' | 'manifest' | 'waiting'>, now: number): TransferRecord {
  return withoutUndefined({ ...prev, ...patch, updatedAt: new Date(now).toISOString() })
}

export function progressed (prev: TransferRecord, report: ProgressReport, now: number): TransferRecord {
  const record = { ...prev, progress: nextProgress(prev.progress, report, now) }
  if (report.destinations !== undefined && prev.destinations !== undefined) {
    const bytes = report.destinations
    record.destinations = prev.destinations.map(d => d.state === 'active' && Object.hasOwn(bytes, d.agent) ? { ...d, bytesDone: bytes[d.agent] } : d)
  }
  const files = report.destinationFiles
  if (files !== undefined && record.destinations !== undefined) {
    record.destinations = record.destinations.map(d => d.state === 'active' && d.files !== undefined && Object.hasOwn(files, d.agent) ? { ...d, files: { ...d.files, done: files[d.agent] } } : d)
  }
  return record
}

/** The data of a `transfer.<id>.progress` event. */
export function progressData (record: TransferRecord): Record<string, unknown> {
  const { bytesDone, bytesTotal, rate, files } = record.progress
  return withoutUndefined({ bytesDone, bytesTotal, rate, files })
}

/**
 * A record as written: a distribution's piece list (up to 8,192 sha256s,
 * ~0.5 MB) is stored apart, written once, so that the progress written every
 * second does not rewrite it.
 */
export function withoutPieces (record: TransferRecord): TransferRecord {
  return record.manifest === undefined ? record : { ...record, manifest: { ...record.manifest, pieces: [] } }
}

export function withoutUndefined<T extends object> (obj: T): T {
  for (const key of Object.keys(obj) as Array<keyof T>) if (obj[key] === undefined) delete obj[key]
  return obj
}
