import cliProgress from 'cli-progress'
import type { SingleBar } from 'cli-progress'

/** A tree's file counts as the API gives them (coordinator/model.ts FileCounts). */
export interface FileCountsLike { total: number, done: number, skipped: number, failed: number, deleted?: number, wouldCopy?: number, wouldDelete?: number }

/** The part of a transfer record a progress line shows. */
export interface TransferLike {
  id: string
  state: string
  progress: { bytesDone: number, bytesTotal?: number, rate: number, eta?: number, files?: FileCountsLike }
  lastError?: { code: string, message: string }
}

export interface ProgressDisplay {
  update: (t: TransferLike) => void
  stop: () => void
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function formatBytes (n: number): string {
  let value = n
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`
}

export function formatDuration (seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
}

/** `files 3 copied, 1 skipped, 0 failed of 4`, with a mirror's removals and a dry run's plan when there are. */
function describeFiles (f: FileCountsLike): string {
  let text = `files ${f.done} copied, ${f.skipped} skipped, ${f.failed} failed of ${f.total}`
  if (f.deleted !== undefined) text += `, ${f.deleted} deleted`
  if (f.wouldCopy !== undefined) {
    text += ` (dry run: ${f.wouldCopy} would be copied${f.wouldDelete !== undefined ? `, ${f.wouldDelete} would be deleted` : ''}; nothing changed)`
  }
  return text
}

/** `active 12.0 MiB / 64.0 MiB (18%) 5.2 MiB/s ETA 10s`: the text after the id (and the bar, on a terminal). */
export function describe (t: TransferLike): string {
  const p = t.progress
  const parts = [t.state.padEnd(9)]
  if (p.bytesTotal !== undefined && p.bytesTotal > 0) {
    parts.push(`${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)} (${Math.floor(100 * p.bytesDone / p.bytesTotal)}%)`)
  } else {
    parts.push(formatBytes(p.bytesDone))
  }
  // A tree: its files beside its bytes, on the same one line.
  if (p.files !== undefined) parts.push(describeFiles(p.files))
  if (t.state === 'active' && p.rate > 0) parts.push(`${formatBytes(p.rate)}/s`)
  if (t.state === 'active' && p.eta !== undefined) parts.push(`ETA ${formatDuration(p.eta)}`)
  if (t.state === 'failed' && t.lastError !== undefined) parts.push(`${t.lastError.code}: ${t.lastError.message}`)
  return parts.join('  ')
}

/**
 * A live bar per transfer on a terminal (cli-progress); elsewhere (a pipe, a
 * log file) one line per change, so that the output stays readable there.
 */
export function progressDisplay (stream: NodeJS.WriteStream = process.stdout): ProgressDisplay {
  return stream.isTTY === true ? barDisplay(stream) : lineDisplay(stream)
}

function lineDisplay (stream: NodeJS.WritableStream): ProgressDisplay {
  const last = new Map<string, string>()
  return {
    update (t) {
      const line = describe(t)
      // Rate and ETA wobble between polls; a new line is worth printing only when the state or the bytes moved.
      const f = t.progress.files
      const key = `${t.state} ${t.progress.bytesDone} ${t.progress.bytesTotal ?? ''} ${f === undefined ? '' : `${f.done}/${f.skipped}/${f.failed}/${f.total}`}`
      if (last.get(t.id) === key) return
      last.set(t.id, key)
      stream.write(`${t.id}  ${line}\n`)
    },
    stop () {}
  }
}

const BAR_MAX = 30
/** Narrower than this, a bar says too little to be worth its room: the line goes without. */
const BAR_MIN = 10

/**
 * One bar line, never wider than `columns - 1` (a line that fills the last
 * column makes some terminals wrap, and the redraw then climbs the screen):
 * the bar shrinks first, then goes, then the text is cut.
 */
export function barLine (t: TransferLike, fraction: number, columns: number): string {
  const room = Math.max(20, columns) - 1
  const texts = [describe(t).trimEnd(), brief(t)]
  for (const text of texts) {
    const size = Math.min(BAR_MAX, room - (t.id.length + 2 + 4 + text.length))
    if (size < BAR_MIN) continue
    const filled = Math.round(size * Math.min(1, Math.max(0, fraction)))
    const bar = '='.repeat(filled) + (filled < size ? '>' : '') + ' '.repeat(Math.max(0, size - filled - 1))
    return `${t.id}  [${bar}]  ${text}`
  }
  for (const text of texts) {
    if (t.id.length + 2 + text.length <= room) return `${t.id}  ${text}`
  }
  const line = `${t.id}  ${texts[1]}`
  return line.length > room ? `${line.slice(0, room - 1)}…` : line
}

/** `active 1.5 GiB 37% 123.0 MiB/s ETA 1h02m`: describe() for a narrow terminal, the total left out. */
function brief (t: TransferLike): string {
  const p = t.progress
  const parts = [t.state, formatBytes(p.bytesDone)]
  if (p.bytesTotal !== undefined && p.bytesTotal > 0) parts.push(`${Math.floor(100 * p.bytesDone / p.bytesTotal)}%`)
  if (t.state === 'active' && p.rate > 0) parts.push(`${formatBytes(p.rate)}/s`)
  if (t.state === 'active' && p.eta !== undefined) parts.push(`ETA ${formatDuration(p.eta)}`)
  if (t.state === 'failed' && t.lastError !== undefined) parts.push(`${t.lastError.code}: ${t.lastError.message}`)
  return parts.join(' ')
}

function barDisplay (stream: NodeJS.WriteStream): ProgressDisplay {
  const multi = new cliProgress.MultiBar({
    stream,
    hideCursor: true,
    clearOnComplete: false,
    format: (_options, params, payload: { t: TransferLike }) => barLine(payload.t, params.progress, stream.columns ?? (Number(process.env.COLUMNS) || 80))
  })
  const bars = new Map<string, SingleBar>()
  // The bar hides the cursor: give it back when Ctrl-C ends the command mid-transfer.
  const interrupted = (): void => {
    multi.stop()
    process.exit(130)
  }
  process.once('SIGINT', interrupted)
  return {
    update (t) {
      const total = Math.max(1, t.progress.bytesTotal ?? 0)
      const value = t.state === 'succeeded' ? total : Math.min(t.progress.bytesDone, total)
      const bar = bars.get(t.id)
      if (bar === undefined) {
        bars.set(t.id, multi.create(total, value, { t }))
      } else {
        bar.setTotal(total)
        bar.update(value, { t })
      }
    },
    stop () {
      process.off('SIGINT', interrupted)
      multi.update()
      multi.stop()
    }
  }
}
