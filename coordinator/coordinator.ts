import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { pino } from 'pino'
import { createMeshNode, loadOrCreateIdentity } from '../mesh/index.ts'
import type { MeshNode } from '../mesh/index.ts'
import { TransferStore } from './store.ts'
import { buildApi } from './api/index.ts'
import { AgentRegistry } from './registry.ts'
import { Dispatcher } from './dispatch.ts'
import { createScheduler } from './scheduler/index.ts'

export interface CoordinatorConfig {
  dataDir: string
  apiHost: string
  apiPort: number
  /** libp2p listen multiaddrs for the control protocol. */
  listen: string[]
  /** API bearer tokens; when empty, one is generated on first start and kept in the data directory. */
  apiTokens: string[]
  /** Join tokens for enrolling agents; when empty, one is generated likewise. */
  joinTokens: string[]
  scheduler: { name: string, maxActive: number, maxPerAgent: number }
  heartbeatMs: number
  heartbeatTimeoutMs: number
  retryBaseMs: number
  retryMaxMs: number
  ticketTtlSeconds: number
  logLevel: string
}

export interface Coordinator {
  apiUrl: string
  peerId: string
  /** Multiaddrs agents can dial, each ending in /p2p/<peer id>. */
  multiaddrs: string[]
  apiToken: string
  joinToken: string
  node: MeshNode
  store: TransferStore
  stop(): Promise<void>
}

/** Reads a secret kept in the data directory, creating it (0600) on first start. */
async function keptSecret (dataDir: string, name: string): Promise<string> {
  const file = join(dataDir, name)
  try {
    return (await readFile(file, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const secret = `stc_${randomBytes(24).toString('base64url')}`
  await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' })
  return secret
}

export async function startCoordinator (config: CoordinatorConfig): Promise<Coordinator> {
  const logger = pino({ name: 'coordinator', level: config.logLevel })
  const log = (msg: string, fields?: Record<string, unknown>): void => logger.info(fields ?? {}, msg)
  const key = await loadOrCreateIdentity(config.dataDir)
  const apiTokens = config.apiTokens.length > 0 ? config.apiTokens : [await keptSecret(config.dataDir, 'api-token')]
  const joinTokens = config.joinTokens.length > 0 ? config.joinTokens : [await keptSecret(config.dataDir, 'join-token')]
  const store = await TransferStore.open(join(config.dataDir, 'store'))
  const node = await createMeshNode({ privateKey: key, listen: config.listen })

  // The registry and dispatcher call each other; the registry's callbacks run only after both exist.
  const registry: AgentRegistry = new AgentRegistry({
    node,
    store,
    joinTokens: new Set(joinTokens),
    heartbeatMs: config.heartbeatMs,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    log,
    onCall: async (agent, method, params): Promise<unknown> => await dispatcher.onCall(agent, method, params),
    onCast: (agent, method, params) => dispatcher.onCast(agent, method, params),
    onOnline: (agent, claimed) => dispatcher.onOnline(agent, claimed),
    onOffline: agent => dispatcher.onOffline(agent)
  })
  const dispatcher: Dispatcher = new Dispatcher({
    store,
    registry,
    scheduler: createScheduler(config.scheduler.name, { maxActive: config.scheduler.maxActive, maxPerAgent: config.scheduler.maxPerAgent }),
    key,
    log,
    retryBaseMs: config.retryBaseMs,
    retryMaxMs: config.retryMaxMs,
    graceMs: config.heartbeatTimeoutMs,
    ticketTtlSeconds: config.ticketTtlSeconds,
    tickMs: 100
  })
  await registry.start()
  dispatcher.start()
  store.on('transition', (rec, from) => logger.info({ transferId: rec.id, from, to: rec.state, attempt: rec.attempt }, 'transfer state changed'))

  const api = buildApi({ store, tokens: apiTokens, logger: false, onCancel: rec => dispatcher.onCancel(rec) })
  await api.listen({ host: config.apiHost, port: config.apiPort })
  const address = api.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : config.apiPort
  const host = config.apiHost.includes(':') ? `[${config.apiHost}]` : config.apiHost
  const apiUrl = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`
  const multiaddrs = node.getMultiaddrs().map(String)
  log('coordinator started', { apiUrl, peerId: node.peerId.toString(), multiaddrs })

  return {
    apiUrl,
    peerId: node.peerId.toString(),
    multiaddrs,
    apiToken: apiTokens[0],
    joinToken: joinTokens[0],
    node,
    store,
    async stop () {
      dispatcher.stop()
      registry.stop()
      await api.close()
      await node.stop()
      await store.close()
    }
  }
}
