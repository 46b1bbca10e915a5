import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * bench:swarm --trace: the log lines every process wrote about one
 * distribution, as "seconds after the submit  process  message", in time
 * order; repeated messages of one process are counted, the first one timed.
 */
export async function traceLines (logDir: string, id: string, submittedAt: number): Promise<string[]> {
  const events: Array<{ at: number, who: string, msg: string, count: number }> = []
  for (const file of (await readdir(logDir)).filter(f => f.endsWith('.log'))) {
    const who = file.slice(0, -'.log'.length)
    const seen = new Map<string, { count: number }>()
    for (const line of (await readFile(join(logDir, file), 'utf8')).split('\n')) {
      if (!line.includes(id)) continue
      let entry: { msg?: string, time?: string }
      try {
        entry = JSON.parse(line) as typeof entry
      } catch {
        continue
      }
      const msg = entry.msg ?? ''
      const again = seen.get(msg)
      if (again !== undefined) {
        again.count++
        continue
      }
      // Log lines carry ISO times (pino's isoTime), to the millisecond.
      const event = { at: Date.parse(entry.time ?? ''), who, msg, count: 1 }
      seen.set(msg, event)
      events.push(event)
    }
  }
  return events.sort((a, b) => a.at - b.at).map(e => `${((e.at - submittedAt) / 1000).toFixed(3).padStart(8)} s  ${e.who.padEnd(12)} ${e.msg}${e.count > 1 ? ` (×${e.count})` : ''}`)
}
