import type { FileCounts, Progress } from './model.ts'

/**
 * Seconds over which the reported rate forgets older samples. Reports arrive
 * about once a second, so a plain "last interval" rate would jitter with every
 * fsync and network hiccup; an exponential average weighted by elapsed time
 * stays steady and still follows a real change within a few seconds.
 */
const RATE_HALF_LIFE_S = 3

export interface ProgressReport {
  bytesDone: number
  bytesTotal?: number
  files?: FileCounts
  /** A distribution's progress by destination agent, merged into its active destinations. */
  destinations?: Record<string, number>
  /** A tree distribution's files in place by destination agent, merged into its active destinations' counts. */
  destinationFiles?: Record<string, number>
}

export function nextProgress (prev: Progress, report: ProgressReport, now: number): Progress {
  const bytesTotal = report.bytesTotal ?? prev.bytesTotal
  const dt = (now - Date.parse(prev.updatedAt)) / 1000
  let rate: number
  if (report.bytesDone < prev.bytesDone) {
    // The transfer restarted from an earlier offset: the old rate says nothing about the new run.
    rate = 0
  } else if (!(dt > 0)) {
    rate = prev.rate
  } else {
    const sample = (report.bytesDone - prev.bytesDone) / dt
    const weight = 1 - 2 ** (-dt / RATE_HALF_LIFE_S)
    rate = prev.rate > 0 ? prev.rate + weight * (sample - prev.rate) : sample
  }
  rate = Math.round(rate)
  const next: Progress = { bytesDone: report.bytesDone, rate, updatedAt: new Date(now).toISOString() }
  const files = report.files ?? prev.files
  if (files !== undefined) next.files = files
  if (bytesTotal !== undefined) {
    next.bytesTotal = bytesTotal
    if (rate > 0) next.eta = Math.max(0, Math.ceil((bytesTotal - report.bytesDone) / rate))
  }
  return next
}

/** Progress as a new attempt starts (or the transfer goes back to the queue): bytes kept, rate forgotten. */
export function restartProgress (prev: Progress, now: number): Progress {
  const next: Progress = { bytesDone: prev.bytesDone, rate: 0, updatedAt: new Date(now).toISOString() }
  if (prev.files !== undefined) next.files = prev.files
  if (prev.bytesTotal !== undefined) next.bytesTotal = prev.bytesTotal
  return next
}
