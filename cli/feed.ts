import type { FeedPage, StoreEvent } from '../coordinator/index.ts'
import type { ApiClient } from './client.ts'
import { CliError } from './client.ts'

/** One entry of GET /v1/changes: the coordinator's event, as JSON (type-only: the CLI loads none of the coordinator). */
export type FeedItem = StoreEvent

/**
 * The coordinator's cursor_expired answer (410): the cursor is older than the
 * oldest event it still keeps. The API's error code is the contract, so the
 * CLI reads it off its CliError rather than mirroring the coordinator's class.
 */
export function isCursorExpired (err: unknown): err is CliError {
  return err instanceof CliError && err.code === 'cursor_expired'
}

/** The first event the coordinator still keeps, from its cursor_expired answer; NaN when it does not say. */
export function oldestKept (err: CliError): number {
  return Number(err.body?.oldest)
}

/** How long one long poll asks the coordinator to hold the request, in seconds (the `wait` parameter). */
export const LONG_POLL_S = 20

/**
 * Reads the change feed after `after`, holding the request up to `waitS`
 * seconds when nothing is newer; `topics` (comma-separated patterns) is
 * matched by the coordinator. Answers undefined when this coordinator has no
 * feed (404 for the route), so that callers fall back to polling.
 */
export async function readChanges (client: ApiClient, after: number | 'now', waitS: number, opts: { topics?: string, signal?: AbortSignal } = {}): Promise<FeedPage | undefined> {
  try {
    return await client.request<FeedPage>('GET', '/v1/changes', {
      query: after === 'now' ? { start: 'now', wait: waitS, topics: opts.topics } : { after, wait: waitS, topics: opts.topics },
      // The coordinator answers by `wait`; allow it that long and some.
      timeoutMs: (waitS + 15) * 1000,
      signal: opts.signal
    })
  } catch (err) {
    if (err instanceof CliError && err.status === 404 && /no route/.test(err.message)) return undefined
    throw err
  }
}
