import { setTimeout as sleep } from 'node:timers/promises'
import { CliError } from './client.ts'
import type { ApiClient } from './client.ts'
import { isCursorExpired, oldestKept, readChanges } from './feed.ts'
import type { ProgressDisplay, TransferLike } from './progress.ts'

export interface Transfer extends TransferLike {
  source: string
  destination: string
  destinations?: Array<{ destination: string, agent: string, state: string, bytesDone: number, lastError?: { code: string, message: string }, files?: { total: number, done: number, skipped: number, failed: number } }>
  manifest?: { size: number, image?: { digest: string, registryBytes?: number, blobs: Array<{ digest: string, size: number }> } }
  attempt: number
  waiting?: { reason: string, agent: string, since: string }
  executor?: string
  checksumMode?: string
  overwrite?: string
  streams?: number
  tree?: { sync?: string, include?: string[], exclude?: string[] }
  sha256?: string
  blake3?: string
  labels: Record<string, string>
  priority: number
  retries: number
  createdAt: string
  updatedAt: string
  startedAt?: string
  finishedAt?: string
}

export const FINAL_STATES = new Set(['succeeded', 'failed', 'canceled'])

/** Without the change feed, the record is read this often. */
const POLL_MS = 500
/** With the feed, a state change wakes the follower at once; progress is still read this often while bytes move. */
const FEED_REFRESH_S = 1
/** A busy feed (other transfers' events) must not turn into a tight loop of reads. */
const MIN_REFRESH_MS = 250
/** How long a follower waits for a coordinator that stopped answering (a restart takes seconds). */
const UNREACHABLE_GIVE_UP_MS = 60_000

/** The rows a transfer shows: itself and, for a distribution, one per destination. */
export function rows (t: Transfer): TransferLike[] {
  if (t.destinations === undefined) return [t]
  const total = t.manifest?.size ?? t.progress.bytesTotal
  return [t, ...t.destinations.map(d => ({
    id: `  → ${d.agent}`,
    state: d.state,
    // A tree distribution: each destination's files beside its bytes.
    progress: { bytesDone: d.bytesDone, bytesTotal: total, rate: 0, ...(d.files !== undefined ? { files: d.files } : {}) },
    lastError: d.lastError
  }))]
}

/**
 * Follows transfers until each is succeeded, failed or canceled, drawing
 * every update, and answers their final records. Uses the change feed
 * (GET /v1/changes long polls) when the coordinator has it, else polls.
 */
export async function follow (client: ApiClient, ids: string[], display?: ProgressDisplay): Promise<Transfer[]> {
  const latest = new Map<string, Transfer>()
  const pending = new Set(ids)
  const refresh = async (): Promise<void> => {
    await Promise.all([...pending].map(async id => {
      const t = await client.request<Transfer>('GET', `/v1/transfers/${encodeURIComponent(id)}`)
      latest.set(id, t)
      for (const row of rows(t)) display?.update(row)
      if (FINAL_STATES.has(t.state)) pending.delete(id)
    }))
  }
  // The feed, filtered to these transfers, wakes the follower on each of their events. Reading it from
  // the start costs a few quick pages (the coordinator skips what does not match) and some spare refreshes.
  const topics = ids.map(id => `transfer.${id}.#`).join(',')
  let cursor: number | undefined = 0
  let unreachableSince: number | undefined
  try {
    await refresh()
    while (pending.size > 0) {
      const started = performance.now()
      try {
        if (cursor === undefined) {
          await sleep(POLL_MS)
        } else {
          try {
            const page = await readChanges(client, cursor, FEED_REFRESH_S, { topics })
            if (page === undefined) cursor = undefined
            else cursor = Math.max(cursor, page.next)
          } catch (err) {
            // Events were dropped while we were away: the records are read again below anyway.
            if (!isCursorExpired(err)) throw err
            const oldest = oldestKept(err)
            cursor = Number.isFinite(oldest) ? oldest - 1 : undefined
          }
          const elapsed = performance.now() - started
          if (elapsed < MIN_REFRESH_MS) await sleep(MIN_REFRESH_MS - elapsed)
        }
        await refresh()
        unreachableSince = undefined
      } catch (err) {
        // A coordinator restarting is no reason to stop following; one gone for good is.
        if (!(err instanceof CliError) || err.code !== 'unavailable') throw err
        unreachableSince ??= performance.now()
        if (performance.now() - unreachableSince > UNREACHABLE_GIVE_UP_MS) throw err
        await sleep(POLL_MS)
      }
    }
  } finally {
    display?.stop()
  }
  return ids.map(id => latest.get(id) as Transfer)
}
