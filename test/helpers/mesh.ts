import { mkdtemp, mkdir, rm, readFile, stat } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ChildProcess } from 'node:child_process'
import { freePort, spawnStaccato, stopProcess, waitForJson } from '../../cli/index.ts'
import type { ReadyInfo, SpawnOptions } from '../../cli/index.ts'

/** `staccato agent` with faults composed in. */
const FAULTY_AGENT = join(import.meta.dirname, '..', 'fixtures', 'faulty-agent.ts')

export interface AgentInfo { name: string, peerId: string, addrs: string[], statusUrl: string }
export interface AgentStatus {
  counters: { bytesServed: number, bytesReceived: number, dataRequests: number, dataRefused: number, journalCommits: number, swarmPiecesServed: number, swarmPeersDropped: number }
  active: string[]
  journal: Array<{ transferId: string, attempt: number, durableOffset: number, outcome?: { outcome: string, sha256?: string } }>
}
export interface Transfer {
  id: string
  state: string
  attempt: number
  sha256?: string
  progress: { bytesDone: number, bytesTotal?: number }
  lastError?: { code: string, message: string }
}


export async function sha256File (file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/**
 * A coordinator and agents as real processes on loopback, each with its own
 * temporary directory, driven through the REST API like a user would.
 */
export class TestMesh {
  readonly dir: string
  ready!: ReadyInfo
  private coordinator?: ChildProcess
  private meshPort = 0
  private apiPort = 0
  readonly agents = new Map<string, { child: ChildProcess, info: AgentInfo, args: string[], env: NodeJS.ProcessEnv, spawn: SpawnOptions }>()

  private constructor (dir: string) {
    this.dir = dir
  }

  static async create (): Promise<TestMesh> {
    const mesh = new TestMesh(await mkdtemp(join(tmpdir(), 'staccato-e2e-')))
    await mkdir(join(mesh.dir, 'logs'))
    return mesh
  }

  volume (agent: string): string {
    return join(this.dir, 'volumes', agent)
  }

  async startCoordinator (extra: string[] = []): Promise<ReadyInfo> {
    // Ports chosen here may be taken by another test's process between freePort's check and the coordinator's bind
    // (the suite runs files in parallel): then, and only on a first start, it starts again on other ports.
    const choosing = this.meshPort === 0
    for (let attempt = 1; ; attempt++) {
      if (choosing) {
        this.meshPort = await freePort()
        this.apiPort = await freePort()
      }
      const readyFile = join(this.dir, 'coordinator-ready.json')
      const logFile = join(this.dir, 'logs', 'coordinator.log')
      // Appended to across restarts: this start's lines begin here.
      const from = (await stat(logFile).catch(() => undefined))?.size ?? 0
      await rm(readyFile, { force: true })
      this.coordinator = spawnStaccato([
        'coordinator', '--data-dir', join(this.dir, 'coordinator'), '--api-port', String(this.apiPort),
        '--listen', `/ip4/127.0.0.1/tcp/${this.meshPort}`, '--ready-file', readyFile,
        '--heartbeat-timeout', '3000', '--retry-base', '200', ...extra
      ], logFile)
      try {
        this.ready = await waitForJson<ReadyInfo>(readyFile, this.coordinator, 90_000, 'coordinator')
        return this.ready
      } catch (err) {
        // What the coordinator said before it ended: the test's failure names its cause.
        const said = (await readFile(logFile).catch(() => Buffer.alloc(0))).subarray(from).toString('utf8').slice(-2000)
        if (choosing && attempt < 3 && /EADDRINUSE|already in use/.test(said)) continue
        throw new Error(`${(err as Error).message}; its log ends:\n${said}`, { cause: err })
      }
    }
  }

  /**
   * `opts.coordinator`: the address the agent dials instead of the coordinator's own (a relay a test can cut).
   * `opts.faults`: faults composed into the agent (test/fixtures/faulty-agent.ts), e.g. 'corrupt-data=1'.
   */
  async startAgent (name: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}, opts: { coordinator?: string, faults?: string } = {}): Promise<AgentInfo> {
    await mkdir(this.volume(name), { recursive: true })
    const readyFile = join(this.dir, `${name}-ready.json`)
    await rm(readyFile, { force: true })
    const args = [
      'agent', '--name', name, '--coordinator', opts.coordinator ?? this.ready.multiaddrs[0], '--join-token', this.ready.joinToken,
      '--data-dir', join(this.dir, 'agents', name), '--volume', `vol=${this.volume(name)}`,
      '--listen', '/ip4/127.0.0.1/tcp/0', '--status-port', '0', '--ready-file', readyFile, ...extra
    ]
    if (opts.faults !== undefined) args.unshift(opts.faults)
    const spawn: SpawnOptions = opts.faults !== undefined ? { entry: FAULTY_AGENT } : {}
    const child = spawnStaccato(args, join(this.dir, 'logs', `${name}.log`), env, spawn)
    const info = await this.waitReady(name, readyFile, child)
    this.agents.set(name, { child, info, args, env, spawn })
    await this.waitForAgent(name, true)
    return info
  }

  /** Waits for an agent's ready file; one that exits first fails with why, from its log and the coordinator's. */
  private async waitReady (name: string, readyFile: string, child: ChildProcess): Promise<AgentInfo> {
    return await waitForJson<AgentInfo>(readyFile, child, 90_000, `agent ${name}`).catch(async (err: Error) => {
      const tail = async (n: string): Promise<string> => (await readFile(join(this.dir, 'logs', `${n}.log`), 'utf8').catch(() => '')).split('\n').slice(-15).join('\n')
      throw new Error(`${err.message}\n--- ${name} (last lines) ---\n${await tail(name)}\n--- coordinator (last lines) ---\n${await tail('coordinator')}`)
    })
  }

  async waitForAgent (name: string, online: boolean, timeoutMs = 60_000): Promise<void> {
    await this.until(async () => {
      const res = await this.api('GET', `/v1/agents/${name}`)
      return res.status === 200 && (res.body as { online: boolean }).online === online
    }, timeoutMs, `agent ${name} ${online ? 'online' : 'offline'}`)
  }

  async kill (name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (name === 'coordinator') {
      if (this.coordinator !== undefined) await stopProcess(this.coordinator, signal)
      return
    }
    const a = this.agents.get(name)
    if (a !== undefined) await stopProcess(a.child, signal)
  }

  async restartAgent (name: string): Promise<AgentInfo> {
    const a = this.agents.get(name)
    if (a === undefined) throw new Error(`no agent ${name}`)
    await this.kill(name)
    const readyFile = a.args[a.args.indexOf('--ready-file') + 1]
    await rm(readyFile, { force: true })
    const child = spawnStaccato(a.args, join(this.dir, 'logs', `${name}.log`), a.env, a.spawn)
    const info = await this.waitReady(name, readyFile, child)
    this.agents.set(name, { child, info, args: a.args, env: a.env, spawn: a.spawn })
    return info
  }

  async status (name: string): Promise<AgentStatus> {
    const a = this.agents.get(name)
    if (a === undefined) throw new Error(`no agent ${name}`)
    return await (await fetch(a.info.statusUrl)).json() as AgentStatus
  }

  async api (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: unknown }> {
    const res = await fetch(`${this.ready.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.ready.apiToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined
    })
    const text = await res.text()
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) }
  }

  async submit (source: string, destination: string, extra: Record<string, unknown> = {}): Promise<Transfer> {
    const res = await this.api('POST', '/v1/transfers', { source, destination, ...extra })
    if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${JSON.stringify(res.body)}`)
    return res.body as Transfer
  }

  async transfer (id: string): Promise<Transfer> {
    return (await this.api('GET', `/v1/transfers/${id}`)).body as Transfer
  }

  async waitForState (id: string, states: string[], timeoutMs = 60_000): Promise<Transfer> {
    let last: Transfer | undefined
    await this.until(async () => {
      last = await this.transfer(id)
      return states.includes(last.state)
    }, timeoutMs, `transfer ${id} in ${states.join('|')}`, () => JSON.stringify(last))
    return last as Transfer
  }

  async until (check: () => Promise<boolean>, timeoutMs: number, what: string, detail: () => string = () => ''): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (await check().catch(() => false)) return
      await sleep(50)
    }
    throw new Error(`timed out waiting for ${what} ${detail()}\n${await this.logs()}`)
  }

  async logs (): Promise<string> {
    const names = ['coordinator', ...this.agents.keys()]
    const parts = await Promise.all(names.map(async n => {
      const text = await readFile(join(this.dir, 'logs', `${n}.log`), 'utf8').catch(() => '')
      return `--- ${n} (last lines) ---\n${text.split('\n').slice(-15).join('\n')}`
    }))
    return parts.join('\n')
  }

  async stop (): Promise<void> {
    await Promise.all([...this.agents.values()].map(async a => await stopProcess(a.child)))
    if (this.coordinator !== undefined) await stopProcess(this.coordinator)
    // STACCATO_KEEP_TEST_DIR=1 keeps the logs and volumes of every mesh to read after a failure.
    if (process.env.STACCATO_KEEP_TEST_DIR === undefined) await rm(this.dir, { recursive: true, force: true })
  }
}
