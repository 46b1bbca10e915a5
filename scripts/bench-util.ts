import { readFileSync, readdirSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

export const MiB = 1024 * 1024

// Linux reports utime and stime in clock ticks; USER_HZ is 100 almost everywhere, but ask.
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds (pid: number): number {
  const { user, system } = cpuSplit(pid)
  return user + system
}

/** User and system (kernel) CPU seconds of a process, all its threads. */
export function cpuSplit (pid: number): { user: number, system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Field 2 (comm) may hold spaces; the fields after its closing parenthesis are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS }
}

/**
 * CPU seconds the whole machine has spent busy so far (user, nice, system,
 * irq, softirq from /proc/stat's first line; idle and iowait left out): what
 * a run costs when it is several processes we do not start (rsync, ssh,
 * sshd), read before and after it on an otherwise quiet machine.
 */
export function machineCpuSeconds (): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const [user, nice, system, , , irq, softirq] = fields
  return (user + nice + system + irq + softirq) / CLOCK_TICKS
}

/**
 * CPU seconds (user + system) of a process and of each of its children so
 * far, by pid (/proc/<pid>/task/<pid>/children): a PostgreSQL server's
 * postmaster and backends. A process gone meanwhile is left out.
 */
export function processTreeCpu (pid: number): Map<number, number> {
  const out = new Map<number, number>()
  let children: number[] = []
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number)
  } catch {
    // Gone, or no such file on this kernel: the process itself, if it is still there.
  }
  for (const p of [pid, ...children]) {
    try {
      out.set(p, cpuSeconds(p))
    } catch {
      // It exited between the listing and the read.
    }
  }
  return out
}

/** User and system CPU seconds of a process's main thread alone (its event loop; not its worker threads). */
export function mainThreadCpuSplit (pid: number): { user: number, system: number } {
  const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS }
}

/** Minor page faults of a process so far, all its threads (field 10 of /proc/<pid>/stat): fresh memory touched. */
export function minorFaults (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7])
}

/** Peak resident set size of a process in MiB (VmHWM), from /proc/<pid>/status. */
export function peakRssMiB (pid: number): number {
  return statusKiB(pid, 'VmHWM') / 1024
}

export function rssMiB (pid: number): number {
  return statusKiB(pid, 'VmRSS') / 1024
}

function statusKiB (pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? NaN : Number(m[1])
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]
}

/** MB/s (10^6 bytes per second), the unit scp and most disk tools print. */
export function mbps (bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000)
}

export function round (n: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

/** Prints the human table to stderr, or only the JSON object to stdout with --json. */
export function report (json: boolean, result: Record<string, unknown>, lines: string[]): void {
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`)
  else process.stdout.write(`${lines.join('\n')}\n`)
}

/** Progress notes go to stderr so that --json output stays one clean object. */
export function note (text: string): void {
  process.stderr.write(`${text}\n`)
}

/**
 * Writes out every dirty page (sync(1)) before a timed copy: a copy that
 * syncs (ours do, per group with syncfs and per file with fdatasync) would
 * otherwise wait for the bytes whatever ran before it left unwritten, the
 * source tree just made or the other tool's copy, and one that does not
 * (scp, rsync) would not.
 */
export function flushDirtyPages (): void {
  execFileSync('sync')
}

/**
 * User and system CPU seconds of a process's threads, summed by thread name (comm: the main thread "node",
 * V8's "V8 DefaultWorke" for GC and compilation, "libuv-worker", worker threads): where the CPU the main
 * thread does not account for goes. A thread that ended is gone from the list (its CPU stays in cpuSplit's).
 */
export function threadCpuSplit (pid: number): Record<string, { user: number, system: number }> {
  const out: Record<string, { user: number, system: number }> = {}
  let tasks: string[]
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tasks) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    } catch {
      continue
    }
    const name = tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const t = out[name] ??= { user: 0, system: 0 }
    t.user += Number(fields[11]) / CLOCK_TICKS
    t.system += Number(fields[12]) / CLOCK_TICKS
  }
  return out
}
