import { join } from 'node:path'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import type { Logger } from 'pino'
import { createMeshNode, issuerKey, loadOrCreateIdentity, InvalidArgumentError } from '../mesh/index.ts'
import type { MeshNode } from '../mesh/index.ts'
import { file, random, nullSink, http, https, loadPlugins } from '../protocols/index.ts'
import type { ProtocolPlugin } from '../protocols/index.ts'
import { Journal } from './journal.ts'
import { Executor } from './executor.ts'
import { ControlClient } from './control-client.ts'
import { startDataServer } from './data-server.ts'
import { newCounters } from './counters.ts'
import type { AgentCounters } from './counters.ts'
import { TokenBucket } from './rate-limit.ts'

export const AGENT_VERSION = '0.1.0'

export interface VolumeConfig {
  name: string
  root: string
  readOnly: boolean
}

export interface AgentConfig {
  name: string
  /** The coordinator's multiaddr, ending in /p2p/<its peer id>: the id is how the agent authenticates it. */
  coordinator: string
  dataDir: string
  listen: string[]
  volumes: VolumeConfig[]
  /** Module specifiers of third-party protocol plug-ins. */
  plugins: string[]
  joinToken?: string
  /** Bytes per second; unlimited when absent. */
  maxUploadRate?: number
  maxDownloadRate?: number
  /** Loopback HTTP port for /status (JSON counters); off when absent. */
  statusPort?: number
  syncEveryBytes: number
  syncEveryMs: number
  logLevel: string
}

export interface Agent {
  name: string
  node: MeshNode
  counters: AgentCounters
  /** Resolves once the agent has registered with the coordinator. */
  registered: Promise<void>
  statusUrl?: string
  stop(): Promise<void>
}

export async function startAgent (config: AgentConfig, onFatal: (err: Error) => void = () => {}): Promise<Agent> {
  const logger: Logger = pino({ name: `agent:${config.name}`, level: config.logLevel })
  const log = (msg: string, fields?: Record<string, unknown>): void => logger.info(fields ?? {}, msg)
  const coordinatorAddr = multiaddr(config.coordinator)
  const coordinatorId = coordinatorAddr.getComponents().findLast(c => c.name === 'p2p')?.value
  if (coordinatorId === undefined) throw new InvalidArgumentError(`coordinator: '${config.coordinator}' must end in /p2p/<coordinator peer id>`)
  const issuer = issuerKey(coordinatorId)

  const privateKey = await loadOrCreateIdentity(config.dataDir)
  const journal = await Journal.open(join(config.dataDir, 'journal'))
  const extra = await loadPlugins(config.plugins, process.cwd())
  const byScheme = new Map<string, ProtocolPlugin>()
  for (const p of [random(), nullSink(), http(), https(), ...extra]) byScheme.set(p.scheme, p)
  const plugins = { volumes: file({ volumes: config.volumes }), byScheme }
  const counters = newCounters()
  const upload = config.maxUploadRate !== undefined ? new TokenBucket(config.maxUploadRate) : undefined
  const download = config.maxDownloadRate !== undefined ? new TokenBucket(config.maxDownloadRate) : undefined

  const node = await createMeshNode({ privateKey, listen: config.listen })
  await startDataServer({ node, self: config.name, issuer, plugins, counters, upload, log })

  // The executor reports through the control client created just below; its callbacks run only after both exist.
  const executor = new Executor({
    self: config.name,
    node,
    plugins,
    journal,
    counters,
    download,
    report: async r => { await control.call('report', r) },
    progress: p => { control.cast('progress', p) },
    log,
    syncEveryBytes: config.syncEveryBytes,
    syncEveryMs: config.syncEveryMs,
    progressEveryMs: 1000
  })
  const control = new ControlClient({
    node,
    coordinator: coordinatorAddr,
    executor,
    journal,
    log,
    onFatal: err => {
      logger.error({ code: (err as { code?: string }).code }, `the coordinator refused this agent: ${err.message}`)
      onFatal(err)
    },
    registration: () => ({
      name: config.name,
      version: AGENT_VERSION,
      volumes: config.volumes.map(v => ({ name: v.name, readOnly: v.readOnly })),
      plugins: ['agent', ...byScheme.keys()],
      addrs: node.getMultiaddrs().map(a => a.toString()),
      joinToken: config.joinToken
    })
  })
  control.start()

  let status: Server | undefined
  let statusUrl: string | undefined
  if (config.statusPort !== undefined) {
    status = createServer((req, res) => {
      void (async () => {
        if (req.url !== '/status') { res.writeHead(404).end(); return }
        const body = { name: config.name, peerId: node.peerId.toString(), counters, active: executor.active(), journal: await journal.all() }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
      })().catch(() => res.writeHead(500).end())
    })
    await new Promise<void>(resolve => status?.listen(config.statusPort, '127.0.0.1', resolve))
    const addr = status.address()
    if (addr !== null && typeof addr === 'object') statusUrl = `http://127.0.0.1:${addr.port}/status`
  }
  log('agent started', { name: config.name, peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), statusUrl })

  return {
    name: config.name,
    node,
    counters,
    registered: control.registered,
    statusUrl,
    async stop () {
      await control.stop()
      await executor.stop()
      status?.close()
      await node.stop()
      await journal.close()
    }
  }
}
