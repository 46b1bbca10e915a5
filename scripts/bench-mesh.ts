import { mkdtemp, mkdir, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ChildProcess } from 'node:child_process'
import { freePort, spawnStaccato, stopProcess, waitForJson } from '../cli/index.ts'
import type { ReadyInfo } from '../cli/index.ts'

export interface BenchAgent { name: string, child: ChildProcess, pid: number, volume: string, log: string }

/**
 * A coordinator and agents as separate processes on loopback, as a user runs
 * them, in a temporary directory (under `base`, so that volumes can sit on the
 * disk being measured).
 */
export class BenchMesh {
  readonly dir: string
  ready!: ReadyInfo
  coordinator?: ChildProcess
  readonly agents = new Map<string, BenchAgent>()

  private constructor (dir: string) {
    this.dir = dir
  }

  static async create (base = tmpdir()): Promise<BenchMesh> {
    const mesh = new BenchMesh(await mkdtemp(join(base, 'staccato-bench-')))
    await mkdir(join(mesh.dir, 'logs'))
    return mesh
  }

  /** `logLevel`: 'info' for a bench that reads the coordinator's log (bench:swarm --trace). */
  async startCoordinator (env: NodeJS.ProcessEnv = {}, logLevel = 'warn'): Promise<void> {
    const readyFile = join(this.dir, 'coordinator-ready.json')
    this.coordinator = spawnStaccato([
      'coordinator', '--data-dir', join(this.dir, 'coordinator'), '--api-port', String(await freePort()),
      '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--ready-file', readyFile, '--log-level', logLevel
    ], join(this.dir, 'logs', 'coordinator.log'), env)
    this.ready = await waitForJson<ReadyInfo>(readyFile, this.coordinator, 30_000, 'coordinator')
  }

  async startAgent (name: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<BenchAgent> {
    const volume = join(this.dir, 'volumes', name)
    await mkdir(volume, { recursive: true })
    const readyFile = join(this.dir, `${name}-ready.json`)
    const log = join(this.dir, 'logs', `${name}.log`)
    const child = spawnStaccato([
      'agent', '--name', name, '--coordinator', this.ready.multiaddrs[0], '--join-token', this.ready.joinToken,
      '--data-dir', join(this.dir, 'agents', name), '--volume', `vol=${volume}`,
      '--listen', '/ip4/127.0.0.1/tcp/0', '--ready-file', readyFile, ...extra
    ], log, env)
    await waitForJson(readyFile, child, 30_000, `agent ${name}`)
    const agent = { name, child, pid: child.pid as number, volume, log }
    this.agents.set(name, agent)
    await this.until(async () => {
      const res = await this.api('GET', `/v1/agents/${name}`)
      return res.status === 200 && (res.body as { online: boolean }).online
    }, 30_000, `agent ${name} online`)
    return agent
  }

  async api (method: string, path: string, body?: unknown): Promise<{ status: number, body: unknown }> {
    const res = await fetch(`${this.ready.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.ready.apiToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined
    })
    const text = await res.text()
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) }
  }

  /** Submits a transfer and waits for it to finish; throws unless it succeeded. */
  async run (source: string, destination: string, timeoutMs: number, extra: Record<string, unknown> = {}): Promise<{ id: string, sha256: string }> {
    // The feed's position before the submit: none of the transfer's events can fall before it.
    const start = await this.api('GET', '/v1/changes?start=now')
    const res = await this.api('POST', '/v1/transfers', { source, destination, retries: 0, ...extra })
    if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${JSON.stringify(res.body)}`)
    const id = (res.body as { id: string }).id
    let last: { state: string, sha256: string, lastError?: unknown } | undefined
    const ended = async (): Promise<boolean> => {
      last = (await this.api('GET', `/v1/transfers/${id}`)).body as typeof last
      return last?.state === 'succeeded' || last?.state === 'failed' || last?.state === 'canceled'
    }
    if (start.status === 200) {
      // Woken by the transfer's own events (long polls, as `transfer submit --wait` follows it): a poll every 20 ms
      // cost the coordinator CPU on the same two cores as the agents measured.
      let cursor = (start.body as { next: number }).next
      await this.until(async () => {
        if (await ended()) return true
        const page = await this.api('GET', `/v1/changes?after=${cursor}&wait=5&topics=${encodeURIComponent(`transfer.${id}.#`)}`)
        if (page.status === 200) cursor = (page.body as { next: number }).next
        // A cursor the feed no longer keeps (410) or a failing feed: back to a poll's pace.
        else await sleep(20)
        return await ended()
      }, timeoutMs, `transfer ${id}`, 0)
    } else {
      await this.until(ended, timeoutMs, `transfer ${id}`, 20)
    }
    if (last?.state !== 'succeeded') throw new Error(`transfer ${id} ended ${last?.state}: ${JSON.stringify(last?.lastError)}`)
    return { id, sha256: last.sha256 }
  }

  /**
   * How long the executing agent spent on a transfer, from its own log: from
   * "transfer started" to "transfer succeeded" (pino's `time`, epoch ms).
   * This leaves out the coordinator's scheduling tick and our polling.
   */
  async executorMs (agent: string, transferId: string, endMsg = 'transfer succeeded'): Promise<number> {
    const a = this.agents.get(agent)
    if (a === undefined) throw new Error(`no agent ${agent}`)
    let started: number | undefined
    let succeeded: number | undefined
    for (const line of (await readFile(a.log, 'utf8')).split('\n')) {
      if (!line.includes(transferId)) continue
      // Log lines carry ISO times (pino's isoTime), to the millisecond.
      const entry = JSON.parse(line) as { msg: string, time: string }
      if (entry.msg === 'transfer started') started = Date.parse(entry.time)
      if (entry.msg === endMsg) succeeded = Date.parse(entry.time)
    }
    if (started === undefined || succeeded === undefined || Number.isNaN(started) || Number.isNaN(succeeded)) throw new Error(`no start and end of ${transferId} in ${a.log}`)
    // Log times have millisecond resolution; a tiny transfer must not divide by zero.
    return Math.max(1, succeeded - started)
  }

  async until (check: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 50): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (await check().catch(() => false)) return
      await sleep(everyMs)
    }
    throw new Error(`timed out waiting for ${what}`)
  }

  /** Stops every process; `keepLogs` leaves the logs (and only them) for a look afterwards. */
  async stop (keepLogs = false): Promise<void> {
    await Promise.all([...this.agents.values()].map(async a => await stopProcess(a.child)))
    if (this.coordinator !== undefined) await stopProcess(this.coordinator)
    if (keepLogs) {
      for (const name of await readdir(this.dir)) if (name !== 'logs') await rm(join(this.dir, name), { recursive: true, force: true })
      return
    }
    await rm(this.dir, { recursive: true, force: true })
  }
}
