import type { ChildProcess } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

// What the benchmarks' helper daemons (sshd, nginx, docker-registry) share:
// each runs from its own temporary directory on a loopback port.

/** Whether something accepts connections on 127.0.0.1:port. */
export async function listening (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

/**
 * Waits until `child` listens on `port` (true), exits, or `tries` polls
 * 50 ms apart pass (false). A daemon that has not bound its port gives no
 * event to wait on, hence the poll; the bound keeps a broken one from
 * hanging the benchmark.
 */
export async function startedListening (child: ChildProcess, port: number, tries: number): Promise<boolean> {
  for (let i = 0; i < tries && child.exitCode === null; i++) {
    if (await listening(port)) return true
    await sleep(50)
  }
  return false
}

/** Stops the daemon (if it still runs) and removes its directory. */
export async function stopDaemon (child: ChildProcess | undefined, dir: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child !== undefined && child.exitCode === null) {
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill(signal)
    await exited
  }
  await rm(dir, { recursive: true, force: true })
}
