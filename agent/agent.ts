import { join } from 'node:path'
import { statfs } from 'node:fs/promises'
import type { Server } from 'node:http'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { pino, stdTimeFunctions } from 'pino'
import type { Logger } from 'pino'
import { anyIssuer, createMeshNode, issuerKey, loadOrCreateIdentity, InvalidArgumentError, PACKAGE_VERSION } from '../mesh/index.ts'
import type { MeshNode } from '../mesh/index.ts'
import { file, random, nullSink, http, https, oci, loadPlugins } from '../protocols/index.ts'
import type { RegistryConfig, Volume } from '../protocols/index.ts'
import { Journal } from './journal.ts'
import { Executor } from './executor.ts'
import { ControlClient } from './control-client.ts'
import { executorHandlers, swarmHandlers } from './control-handlers.ts'
import { startDataServer } from './data-server.ts'
import { dataPortAddress, openDataPort } from './data-port.ts'
import { startTreeServer } from './tree/server.ts'
import { newCounters } from './counters.ts'
import type { AgentCounters } from './counters.ts'
import { TokenBucket } from './rate-limit.ts'
import { pluginsByScheme } from './resolve.ts'
import { SwarmService } from './swarm/service.ts'
import { BlobIndex } from './blob-index.ts'
import { startRegistryMirror } from './registry-mirror.ts'
import type { RegistryMirror } from './registry-mirror.ts'
import { isOciPlugin } from './image-job.ts'
import { agentMetrics, metricsRoute, serveHttp } from './metrics.ts'

export const AGENT_VERSION = PACKAGE_VERSION

/** Log fields that may carry secrets (the join token, tickets) at the top level or one level down. */
const LOG_REDACT = ['joinToken', 'token', 'ticket', 'secret', 'authorization', '*.joinToken', '*.token', '*.ticket', '*.secret', '*.authorization']

/** The agent serves its volumes through the file plug-in, so it takes them in that plug-in's shape. */
export type VolumeConfig = Volume

export interface AgentConfig {
  name: string
  /** The coordinator's multiaddr, ending in /p2p/<its peer id>: the id is how the agent authenticates it. */
  coordinator: string
  dataDir: string
  listen: string[]
  volumes: VolumeConfig[]
  /** Module specifiers of third-party protocol plug-ins. */
  plugins: string[]
  /** Address classes or CIDR ranges the http(s) plug-ins may reach although refused by default; none when absent. */
  allowAddresses?: string[]
  /** Settings and credentials per OCI registry host, for the oci plug-in; they go nowhere else. */
  registries?: Record<string, RegistryConfig>
  joinToken?: string
  /** host:port of the registry mirror (agent/registry-mirror.ts); off when absent. */
  registryMirror?: string
  /** The direct data port (agent/data-port.ts): `off`, host:port or a port; beside the mesh port when absent. */
  dataListen?: string
  /** Images the mirror may serve: registry/repository or registry/prefix/*. */
  mirrorImages?: string[]
  /** Labels the coordinator selects this agent by (preheat by labels). */
  labels?: Record<string, string>
  /** Bytes per second; unlimited when absent. */
  maxUploadRate?: number
  maxDownloadRate?: number
  /** Loopback HTTP port for /status (JSON counters); off when absent. */
  statusPort?: number
  /** Port for a Prometheus /metrics listener on metricsHost (127.0.0.1 unless given); off when absent. */
  metricsPort?: number
  metricsHost?: string
  syncEveryBytes: number
  syncEveryMs: number
  /** Data streams a large file is pulled on when its transfer does not say (1 when absent). */
  streams?: number
  /** Large files of a tree carried at once, each on its own data connection (2 when absent). */
  treeStreams?: number
  /** Received files written past the page cache where the file system takes it ('auto', the default) or through it. */
  directIo?: 'auto' | 'off'
  logLevel: string
}

/**
 * What a caller composes into an agent around its parts, without a branch in
 * the agent's code: the tests' fault injection (test/fixtures/faults/) wraps
 * the node to damage bytes on their way out.
 */
export interface AgentSeams {
  /** Wraps the libp2p node before any part of the agent uses it. */
  wrapNode?: (node: MeshNode) => MeshNode
}

export interface Agent {
  name: string
  node: MeshNode
  counters: AgentCounters
  /** Resolves once the agent has registered with the coordinator. */
  registered: Promise<void>
  statusUrl?: string
  metricsUrl?: string
  stop(): Promise<void>
}

/** Stops one part that started; run in reverse order of starting when a later part cannot start. */
type Undo = () => unknown

export async function startAgent (config: AgentConfig, onFatal: (err: Error) => void = () => {}, seams: AgentSeams = {}): Promise<Agent> {
  const started: Undo[] = []
  try {
    return await assemble(config, onFatal, seams, started)
  } catch (err) {
    // A half-started agent would keep its ports and its data directory's LevelDB locks: a caller that retries in process finds them taken.
    for (const undo of started.reverse()) {
      try {
        await undo()
      } catch {
        // The start's error is the one to report; a part that does not stop cleanly would only hide it.
      }
    }
    throw err
  }
}

async function assemble (config: AgentConfig, onFatal: (err: Error) => void, seams: AgentSeams, started: Undo[]): Promise<Agent> {
  const logger: Logger = pino({ name: `agent:${config.name}`, level: config.logLevel, timestamp: stdTimeFunctions.isoTime, redact: { paths: LOG_REDACT, censor: '[redacted]' } })
  const log = (msg: string, fields?: Record<string, unknown>, level: 'info' | 'warn' | 'error' = 'info'): void => logger[level](fields ?? {}, msg)
  // A comma-separated list names coordinator replicas: the agent registers with whichever leads, and takes tickets from any.
  const coordinatorAddrs = config.coordinator.split(',').map(a => multiaddr(a.trim()))
  const coordinatorIds = coordinatorAddrs.map((addr, i) => {
    const id = addr.getComponents().findLast(c => c.name === 'p2p')?.value
    if (id === undefined) throw new InvalidArgumentError(`coordinator: '${config.coordinator.split(',')[i]}' must end in /p2p/<coordinator peer id>`)
    return id
  })
  const issuer = anyIssuer([...new Set(coordinatorIds)].map(issuerKey))

  const privateKey = await loadOrCreateIdentity(config.dataDir)
  const journal = await Journal.open(join(config.dataDir, 'journal'), {
    onCorrupt: (key, error) => log('journal entry does not parse; left out (that transfer or distribution starts from zero)', { key, error: error.message }, 'warn')
  })
  started.push(async () => { await journal.close() })
  const httpOptions = { allowAddresses: config.allowAddresses ?? [] }
  const extra = await loadPlugins(config.plugins, process.cwd())
  const byScheme = pluginsByScheme([random(), nullSink(), http(httpOptions), https(httpOptions), oci({ ...httpOptions, registries: config.registries })], extra, config.plugins)
  const plugins = { volumes: file({ volumes: config.volumes, directIo: config.directIo }), byScheme }
  const counters = newCounters()
  const upload = config.maxUploadRate !== undefined ? new TokenBucket(config.maxUploadRate) : undefined
  const download = config.maxDownloadRate !== undefined ? new TokenBucket(config.maxDownloadRate) : undefined

  const created = await createMeshNode({ privateKey, listen: config.listen })
  const node = seams.wrapNode?.(created) ?? created
  started.push(async () => { await node.stop() })
  const direct = await openDataPort(dataPortAddress(config.dataListen, config.listen), log)
  started.push(async () => { await direct?.listener.close() })
  await startDataServer({ node, self: config.name, issuer, plugins, counters, upload, log, direct })
  const blobs = await BlobIndex.open(join(config.dataDir, 'blobs'), config.name, plugins)
  await startTreeServer({ node, self: config.name, issuer, volumes: plugins.volumes, volumeList: config.volumes, counters, upload, log, direct })
  const swarm = new SwarmService({
    node,
    blobs,
    volumeList: config.volumes,
    self: config.name,
    issuer,
    plugins,
    journal,
    counters,
    upload,
    download,
    log,
    progress: p => { control.cast('swarmProgress', p) },
    stats: s => { control.cast('swarmStats', s) },
    report: async r => { await control.call('swarmReport', r) }
  })
  await swarm.start()
  started.push(async () => { await swarm.stop() })

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
    treeFiles: async p => { await control.call('treeFiles', p) },
    log,
    syncEveryBytes: config.syncEveryBytes,
    syncEveryMs: config.syncEveryMs,
    streams: config.streams,
    treeStreams: config.treeStreams,
    progressEveryMs: 1000,
    blobs,
    volumeList: config.volumes
  })
  started.push(async () => { await executor.stop() })
  const control = new ControlClient({
    node,
    coordinators: coordinatorAddrs,
    executor,
    journal,
    log,
    handlers: { ...executorHandlers(executor), ...swarmHandlers(swarm, log) },
    activeDistributions: () => swarm.active(),
    afterRegister: async () => { await swarm.deliverPending() },
    volumeSpace: async () => await volumeSpace(config.volumes),
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
      joinToken: config.joinToken,
      ...(config.labels !== undefined && Object.keys(config.labels).length > 0 ? { labels: config.labels } : {})
    })
  })
  control.start()
  started.push(async () => { await control.stop() })

  const metrics = agentMetrics({ name: config.name, counters, active: () => [...executor.active(), ...swarm.active()] })
  started.push(() => { metrics.stop() })
  const coordinatorPeers = [...new Set(coordinatorIds)].map(id => peerIdFromString(id))
  let registered = false
  void control.registered.then(() => { registered = true })
  const statusRoute = async (): Promise<{ type: string, body: string }> => {
    const body = {
      name: config.name,
      peerId: node.peerId.toString(),
      version: AGENT_VERSION,
      coordinator: { address: config.coordinator, connected: coordinatorPeers.some(peer => node.getConnections(peer).length > 0), registered },
      volumes: config.volumes,
      counters,
      active: executor.active(),
      journal: await journal.all(),
      swarms: (await journal.allSwarms()).map(({ have: _have, ...entry }) => entry)
    }
    return { type: 'application/json', body: JSON.stringify(body) }
  }
  const servers: Server[] = []
  let statusUrl: string | undefined
  let metricsUrl: string | undefined
  started.push(() => { for (const s of servers) s.close() })
  // A server that cannot start after the rest did: startAgent stops what started, in reverse order; this says why.
  const abandon = (what: string, err: unknown): never => {
    throw new InvalidArgumentError(`cannot serve ${what}: ${(err as Error).message}`)
  }
  try {
    if (config.statusPort !== undefined) {
      const s = await serveHttp('127.0.0.1', config.statusPort, { '/status': statusRoute, '/metrics': metricsRoute(metrics) })
      servers.push(s.server)
      statusUrl = `http://127.0.0.1:${s.port}/status`
    }
    if (config.metricsPort !== undefined) {
      const host = config.metricsHost ?? '127.0.0.1'
      const s = await serveHttp(host, config.metricsPort, { '/metrics': metricsRoute(metrics) })
      servers.push(s.server)
      metricsUrl = `http://${host.includes(':') ? `[${host}]` : host}:${s.port}/metrics`
    }
  } catch (err) {
    abandon('status or metrics', err)
  }
  let mirror: RegistryMirror | undefined
  const ociPlugin = byScheme.get('oci')
  if (config.registryMirror !== undefined && ociPlugin !== undefined && isOciPlugin(ociPlugin)) {
    mirror = await startRegistryMirror({
      listen: config.registryMirror,
      images: config.mirrorImages ?? [],
      oci: ociPlugin,
      blobs,
      counters,
      log,
      want: async image => await control.call('imageWant', { image }),
      inDistribution: id => swarm.active().includes(id)
    }).catch(err => abandon('the registry mirror', err))
  }
  log('agent started', { peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), dataPort: direct?.listener.port, statusUrl, metricsUrl })

  return {
    name: config.name,
    node,
    counters,
    registered: control.registered,
    statusUrl,
    metricsUrl,
    async stop () {
      metrics.stop()
      await control.stop()
      await executor.stop()
      await swarm.stop()
      await mirror?.close()
      for (const s of servers) s.close()
      await direct?.listener.close()
      await node.stop()
      await journal.close()
    }
  }
}

/** Free bytes for an unprivileged writer (bavail) in each volume; a volume that cannot be measured is left out. */
async function volumeSpace (volumes: VolumeConfig[]): Promise<Array<{ name: string, free: number }>> {
  const sizes = await Promise.all(volumes.map(async v => {
    try {
      const s = await statfs(v.root)
      return [{ name: v.name, free: s.bavail * s.bsize }]
    } catch {
      return []
    }
  }))
  return sizes.flat()
}
