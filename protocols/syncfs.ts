import { execFile, spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { promisify } from 'node:util'

const execFileP = promisify(execFile)

/**
 * syncfs(2) on the file system of a path, as `sync -f PATH` (GNU coreutils)
 * does it: Node has no syncfs and no package in the tree exposes it. A
 * spawn from the agent forks a process of 150+ MiB, 5-15 ms on the main
 * thread each time on the 2-core VM (measured in profiles of bench:tree);
 * one long-lived `sh` forks each `sync` instead, a process of a few hundred
 * KiB. It reads one path a line and answers each with sync's exit status.
 */
const LOOP = 'while IFS= read -r d; do sync -f -- "$d" 2>/dev/null; echo $?; done'

interface Waiter { resolve: (ok: boolean) => void }

class Syncer {
  #child: ChildProcessWithoutNullStreams | undefined
  #waiting: Waiter[] = []
  #out = ''
  #broken = false

  /** True when every path's file system was synced; false when that could not be done here (no sh or no coreutils). */
  async sync (paths: string[]): Promise<boolean> {
    // A name with a newline cannot go on a line; spawned on its own (rare).
    if (paths.some(p => p.includes('\n'))) return await execFileP('sync', ['-f', '--', ...paths]).then(() => true, () => false)
    const oks = await Promise.all(paths.map(async p => await this.#one(p)))
    return oks.every(ok => ok)
  }

  async #one (path: string): Promise<boolean> {
    const child = this.#start()
    if (child === undefined) return false
    const answer = new Promise<boolean>(resolve => { this.#waiting.push({ resolve }) })
    this.#ref(true)
    child.stdin.write(`${path}\n`)
    return await answer
  }

  #start (): ChildProcessWithoutNullStreams | undefined {
    if (this.#broken) return undefined
    if (this.#child !== undefined) return this.#child
    const child = spawn('sh', ['-c', LOOP], { stdio: ['pipe', 'pipe', 'ignore'] }) as unknown as ChildProcessWithoutNullStreams
    this.#child = child
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (s: string) => {
      this.#out += s
      for (let nl = this.#out.indexOf('\n'); nl >= 0; nl = this.#out.indexOf('\n')) {
        const line = this.#out.slice(0, nl)
        this.#out = this.#out.slice(nl + 1)
        this.#waiting.shift()?.resolve(line === '0')
      }
      if (this.#waiting.length === 0) this.#ref(false)
    })
    const gone = (): void => {
      if (this.#child !== child) return
      this.#child = undefined
      // No sh at all: not tried again. A loop that died (killed) is started again by the next call.
      if (child.pid === undefined) this.#broken = true
      for (const w of this.#waiting.splice(0)) w.resolve(false)
    }
    child.on('error', gone)
    child.on('exit', gone)
    child.stdin.on('error', gone)
    this.#ref(false)
    return child
  }

  /** The loop keeps the agent alive only while a sync is awaited. */
  #ref (on: boolean): void {
    const c = this.#child
    if (c === undefined) return
    for (const h of [c, c.stdin, c.stdout] as Array<{ ref?: () => void, unref?: () => void }>) {
      if (on) h.ref?.()
      else h.unref?.()
    }
  }
}

const syncer = new Syncer()

/** File systems synced so far by this process (each path of each call): what a test counts. */
let synced = 0

export function syncfsCount (): number {
  return synced
}

/** syncfs on the file system of each path; false when it could not be done here (the caller then fsyncs what it wrote, one by one). */
export async function syncFileSystems (paths: string[]): Promise<boolean> {
  if (paths.length === 0) return true
  const ok = await syncer.sync(paths)
  if (ok) synced += paths.length
  return ok
}
