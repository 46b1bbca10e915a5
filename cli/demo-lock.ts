import { readFileSync } from 'node:fs'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CliError } from './client.ts'

/** What a running demo records in `<dir>/demo.lock`: itself and the processes it started. */
interface LockInfo { pid: number, children: number[] }

function commandLine (pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
  } catch {
    return undefined
  }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** `pid` runs and its command line has `word` (so a recycled pid is not mistaken for ours); without /proc, alive is enough. */
function runs (pid: number, word: string): boolean {
  if (!alive(pid)) return false
  const args = commandLine(pid)
  return args === undefined ? true : args.some(a => a === word || a.includes(word))
}

async function readLock (file: string): Promise<LockInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(file, 'utf8')) as Partial<LockInfo>
    return { pid: Number(info.pid), children: Array.isArray(info.children) ? info.children.map(Number) : [] }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    // Half-written or garbage: nobody can be relying on it.
    return { pid: 0, children: [] }
  }
}

/** Stops the processes a dead demo left behind, by SIGTERM, then SIGKILL after 15 s. */
async function stopLeftovers (pids: number[], dir: string): Promise<number> {
  const left = pids.filter(pid => runs(pid, dir))
  for (const pid of left) process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 150 && left.some(alive); i++) await sleep(100)
  for (const pid of left.filter(alive)) process.kill(pid, 'SIGKILL')
  return left.length
}

export interface DemoLock {
  /** Records the demo's children, so a later demo can stop them if this one dies without doing so. */
  record(children: number[]): Promise<void>
  release(): Promise<void>
}

/**
 * Takes `<dir>/demo.lock`. A lock whose demo still runs is refused with one
 * line; one left by a demo that died (SIGKILL, a crash) is cleared, after
 * stopping whatever it had started that still runs.
 */
export async function takeDemoLock (dir: string, notice: (line: string) => void): Promise<DemoLock> {
  const file = join(dir, 'demo.lock')
  const write = async (info: LockInfo): Promise<void> => {
    await writeFile(`${file}.tmp`, JSON.stringify(info))
    await rename(`${file}.tmp`, file)
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(file, JSON.stringify({ pid: process.pid, children: [] }), { flag: 'wx' })
      // One write at a time: they share the temporary file.
      let writes = Promise.resolve()
      return {
        record: async children => { writes = writes.then(async () => await write({ pid: process.pid, children })); await writes },
        // A failed write was reported to record()'s caller; release only waits for it before removing the file.
        release: async () => { await writes.catch(() => {}); await rm(file, { force: true }) }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const held = await readLock(file)
    if (held === undefined) continue
    if (held.pid > 0 && held.pid !== process.pid && runs(held.pid, 'demo')) {
      throw new CliError('unavailable', `a demo (pid ${held.pid}) is already running with ${dir}: stop it (kill ${held.pid}) or pass --dir`, 1)
    }
    const stopped = await stopLeftovers(held.children, dir)
    notice(`cleared the stale lock of a demo (pid ${held.pid}) that had died${stopped > 0 ? `, and stopped the ${stopped} process(es) it left running` : ''}`)
    await rm(file, { force: true })
  }
  throw new CliError('unavailable', `cannot take ${file}: another demo keeps taking it`, 1)
}

/**
 * Calls `gone` once the process that started the demo is gone: our parent
 * (we were reparented) and, under \`npm start\`, npm itself, whose \`sh -c\`
 * outlives it when npm is killed. Polled: there is no event for another
 * process's death.
 */
export function watchParent (gone: () => void): void {
  const parent = process.ppid
  const stat = (pid: number): string | undefined => { try { return readFileSync(`/proc/${pid}/stat`, 'utf8') } catch { return undefined } }
  // Field 4 of /proc/PID/stat, after the parenthesised command name.
  const npm = process.env.npm_lifecycle_event !== undefined ? Number(stat(parent)?.split(') ')[1]?.split(' ')[1]) : NaN
  const timer = setInterval(() => {
    if (process.ppid !== parent || (npm > 1 && !alive(npm))) {
      clearInterval(timer)
      gone()
    }
  }, 500)
  timer.unref()
}
