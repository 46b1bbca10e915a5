import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { createServer } from 'node:net'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

export const BIN = fileURLToPath(new URL('./bin.ts', import.meta.url))

/** Set in a child that must stop when its parent dies; its stdin is then a pipe from the parent. */
const STOP_WITH_PARENT = 'STACCATO_STOP_WITH_PARENT'

export interface SpawnOptions {
  /**
   * The child stops (as on SIGTERM) when this process dies, however it dies,
   * SIGKILL included: it watches its stdin, a pipe whose write end only this
   * process holds, which the kernel closes on our death. The child also gets a
   * process group of its own, so a terminal's Ctrl-C reaches only us, and we
   * stop the children in order instead of each getting the signal twice.
   */
  stopWithParent?: boolean
  /** The script to run instead of bin.ts, taking the same arguments (a test's agent with faults composed in). */
  entry?: string
}

/** Starts `staccato <args>` as its own process (the same Node that runs us), output appended to logFile. */
export function spawnStaccato (args: string[], logFile: string, env: NodeJS.ProcessEnv = {}, opts: SpawnOptions = {}): ChildProcess {
  const fd = openSync(logFile, 'a')
  const entry = opts.entry ?? BIN
  try {
    if (opts.stopWithParent !== true) {
      const child = spawn(process.execPath, [entry, ...args], { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } })
      logFiles.set(child, logFile)
      return child
    }
    const child = spawn(process.execPath, [entry, ...args], { stdio: ['pipe', fd, fd], env: { ...process.env, ...env, [STOP_WITH_PARENT]: '1' }, detached: true })
    // Never written to: only its closing matters. Errors (EPIPE once the child is gone) are expected.
    child.stdin?.on('error', () => {})
    logFiles.set(child, logFile)
    return child
  } finally {
    closeSync(fd)
  }
}

/** Each spawned child's log, so that a child that dies before it is ready is reported with its last words. */
const logFiles = new WeakMap<ChildProcess, string>()

/** The last lines of a spawned child's log ('' when it has none), to put in an error about it. */
export async function logTail (child: ChildProcess, lines = 20): Promise<string> {
  const file = logFiles.get(child)
  if (file === undefined) return ''
  const text = await readFile(file, 'utf8').catch(() => '')
  const tail = text.trimEnd().split('\n').slice(-lines).join('\n')
  return tail === '' ? '' : `; its log (${file}) ends:\n${tail}`
}

/** Waits for a JSON file a child writes when it is ready, failing early if the child exits. */
export async function waitForJson<T> (file: string, child: ChildProcess, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready${await logTail(child)}`)
    try {
      return JSON.parse(await readFile(file, 'utf8')) as T
    } catch {
      await sleep(50)
    }
  }
  throw new Error(`${what} was not ready within ${timeoutMs} ms${await logTail(child)}`)
}

/** Sends a signal and waits for the process to exit. */
export async function stopProcess (child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  await exited
  clearTimeout(timer)
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for the demo, tests and benchmarks). */
/**
 * A port to give a server that starts later (a coordinator's API or mesh
 * port, which agents must find again after a restart). Not the kernel's
 * choice for port 0: that comes from the ephemeral range, where every
 * outgoing connection and every listener on port 0 (each agent's) takes its
 * ports, so on a busy machine another process could take it between this
 * check and the server's listen (seen as EADDRINUSE in the test suite under
 * load). A random free port below the ephemeral range is taken only by
 * whoever names it.
 */
export async function freePort (): Promise<number> {
  const low = await ephemeralLow()
  const floor = 10_000
  for (let tries = 0; tries < 100; tries++) {
    const port = floor + Math.floor(Math.random() * Math.max(1, low - floor))
    if (await canListen(port)) return port
  }
  return await kernelPort()
}

async function ephemeralLow (): Promise<number> {
  // Linux's default is 32768-60999; elsewhere assume it.
  const text = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '32768 60999')
  const low = Number(text.trim().split(/\s+/)[0])
  return Number.isInteger(low) && low > 11_000 ? low : 32_768
}

async function canListen (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

async function kernelPort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** SIGINT/SIGTERM stop cleanly (LevelDB closed, streams ended); a second signal exits at once. */
export function stopOnSignals (stop: () => Promise<void>, what = 'staccato'): void {
  let stopping = false
  const handler = (why: string): void => {
    if (stopping) process.exit(130)
    stopping = true
    // Says why it went away, next to its last log lines (journald keeps both streams).
    process.stderr.write(`${what}: stopping (${why})\n`)
    stop().then(() => process.exit(0), err => {
      process.stderr.write(`error while stopping: ${String(err)}\n`)
      process.exit(1)
    })
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  if (process.env[STOP_WITH_PARENT] === '1') {
    let gone = false
    const parentGone = (): void => {
      if (gone) return
      gone = true
      handler('the process that started it is gone')
    }
    process.stdin.once('end', parentGone).once('close', parentGone).once('error', parentGone).resume()
  }
}
