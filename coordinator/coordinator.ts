import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { pino, stdTimeFunctions } from 'pino'
import { createMeshNode, listenError, loadOrCreateIdentity } from '../mesh/index.ts'
import type { MeshNode } from '../mesh/index.ts'
import type { TransferStore } from './store.ts'
import { describeStore, openStore } from './store-open.ts'
import { PgTransferStore } from './store-pg.ts'
import { levelTokenRecords } from './token-records.ts'
import type { StoreSpec } from './store-open.ts'
import { TokenStore } from './tokens.ts'
import { buildApi } from './api/index.ts'
import type { RateLimitOptions, TenantPolicy } from './api/index.ts'
import { AgentRegistry } from './registry.ts'
import { AgentSessions } from './agent-sessions.ts'
import { systemClock } from './clock.ts'
import { Dispatcher } from './dispatch.ts'
import { DistributionManager } from './distribution.ts'
import { ImageWants } from './image-wants.ts'
import { ImageHolders } from './image-seed.ts'
import { soleLease } from './leader-lease.ts'
import { pgLeaderLease } from './leader-pg.ts'

// Kraken's and Dragonfly's default piece size: small enough to spread fast, large enough to keep per-piece overhead low.
const DEFAULT_PIECE_SIZE = 4 * 1024 * 1024
import { createScheduler } from './scheduler/index.ts'
import { CoordinatorMetrics } from './metrics.ts'
import { MeshWatch } from './mesh-watch.ts'
import { EventServices } from './events/index.ts'
import type { EventsConfigInput } from './events/index.ts'
import { PEERS_PER_PARTICIPANT, SEED_FANOUT } from './peer-set.ts'

/** Log fields that may carry secrets (tokens, join tokens, webhook secrets, tickets) at the top level or one level down. */
const LOG_REDACT = ['token', 'apiToken', 'joinToken', 'metricsToken', '*.metricsToken', 'secret', 'ticket', 'authorization', '*.token', '*.apiToken', '*.joinToken', '*.secret', '*.ticket', '*.authorization', 'req.headers.authorization']

export interface CoordinatorConfig {
  dataDir: string
  /** Where transfers, agents and events live; default: LevelDB in <dataDir>/store. */
  store?: StoreSpec
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
  /** Which agents, volumes and schemes each tenant may use; unrestricted when absent. */
  tenants?: TenantPolicy
  /** Serve the REST API over HTTPS with these PEM files. */
  tls?: { certFile: string, keyFile: string }
  rateLimit?: RateLimitOptions
  /** A bearer token that may read /metrics and nothing else. */
  metricsToken?: string
  /** Open REST connections one client address may hold (default 64; 0: no cap, e.g. behind a reverse proxy). */
  maxConnectionsPerAddress?: number
  /** Retention, webhook delivery, stalled-transfer checks, live stream (defaults in coordinator/events/service.ts). */
  events?: EventsConfigInput
  /** At most one progress event per transfer per this many ms (default 5000; 0: none). */
  progressEventMs?: number
  /** Piece size for distributions (bytes); 4 MiB when absent. */
  pieceSize?: number
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
async function keptSecret (dataDir: string, name: string, prefix: 'stc_' | 'stj_'): Promise<string> {
  const file = join(dataDir, name)
  try {
    return (await readFile(file, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const secret = `${prefix}${randomBytes(24).toString('base64url')}`
  await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' })
  return secret
}

/** Stops one part that started; run in reverse order of starting when a later part cannot start. */
type Undo = () => Promise<void> | void

export async function startCoordinator (config: CoordinatorConfig): Promise<Coordinator> {
  const started: Undo[] = []
  try {
    return await assemble(config, started)
  } catch (err) {
    // A half-started coordinator would keep its store's locks, its mesh port and its lease: a caller that retries in process finds them taken.
    for (const undo of started.reverse()) {
      try { await undo() } catch { /* the first error is the one to report */ }
    }
    throw err
  }
}

async function assemble (config: CoordinatorConfig, started: Undo[]): Promise<Coordinator> {
  const logger = pino({ name: 'coordinator', level: config.logLevel, timestamp: stdTimeFunctions.isoTime, redact: { paths: LOG_REDACT, censor: '[redacted]' } })
  const log = (msg: string, fields?: Record<string, unknown>, level: 'info' | 'warn' | 'error' = 'info'): void => logger[level](fields ?? {}, msg)
  const key = await loadOrCreateIdentity(config.dataDir)
  const https = config.tls !== undefined ? { cert: await readFile(config.tls.certFile), key: await readFile(config.tls.keyFile) } : undefined
  // The files keep the operator's copy of generated tokens (0600, like a kubeconfig); the coordinator itself holds only their hashes.
  const apiTokens = config.apiTokens.length > 0 ? config.apiTokens : [await keptSecret(config.dataDir, 'api-token', 'stc_')]
  const joinTokens = config.joinTokens.length > 0 ? config.joinTokens : [await keptSecret(config.dataDir, 'join-token', 'stj_')]
  const storeSpec = config.store ?? { kind: 'leveldb', dir: join(config.dataDir, 'store') }
  const store = await openStore(storeSpec, { progressEventMs: config.progressEventMs })
  started.push(async () => { await store.close() })
  // On PostgreSQL the tokens live in the same database, so that every replica knows them; embedded, in a LevelDB of their own.
  const tokens = await TokenStore.over(store instanceof PgTransferStore ? store.tokenRecords() : await levelTokenRecords(join(config.dataDir, 'tokens')))
  started.push(async () => { await tokens.close() })
  if (config.apiTokens.length > 0) for (const t of config.apiTokens) tokens.addConfigToken(t)
  else await tokens.ensureBootstrap(apiTokens[0])
  if (config.joinTokens.length > 0) for (const t of config.joinTokens) tokens.addConfigJoinToken(t)
  else await tokens.ensureBootstrapJoinToken(joinTokens[0])
  // Opened before anything writes, so that no event is written without its webhook deliveries.
  const lease = store instanceof PgTransferStore && storeSpec.kind === 'postgres'
    ? pgLeaderLease({ url: storeSpec.url, fence: pid => { store.setFence(pid) } })
    : soleLease()
  const events = new EventServices(store, config.events, (level, msg, fields) => logger[level](fields ?? {}, msg), systemClock, () => lease.leader)
  await events.open()
  started.push(async () => { await events.close() })
  const metrics = new CoordinatorMetrics(store)
  started.push(() => { metrics.close() })
  const watch = new MeshWatch(store)
  const node = await createMeshNode({ privateKey: key, listen: config.listen })
  started.push(async () => { await node.stop() })

  const clock = systemClock
  // Built in dependency order: the sessions, the parts that talk through them, then the registry that takes their handlers.
  const sessions = new AgentSessions(clock)
  const distributions = new DistributionManager({
    store,
    agents: sessions,
    clock,
    key,
    log,
    pieceSize: config.pieceSize ?? DEFAULT_PIECE_SIZE,
    peersPerParticipant: PEERS_PER_PARTICIPANT,
    seedFanout: SEED_FANOUT,
    ticketTtlSeconds: config.ticketTtlSeconds
  })
  const dispatcher = new Dispatcher({
    store,
    agents: sessions,
    distributions,
    scheduler: createScheduler(config.scheduler.name, { maxActive: config.scheduler.maxActive, maxPerAgent: config.scheduler.maxPerAgent }),
    key,
    log,
    retryBaseMs: config.retryBaseMs,
    retryMaxMs: config.retryMaxMs,
    graceMs: config.heartbeatTimeoutMs,
    ticketTtlSeconds: config.ticketTtlSeconds,
    clock,
    onTick: seconds => metrics.observePass(seconds)
  })
  const imageHolders = new ImageHolders()
  const imageWants = new ImageWants({ store, isOnline: agent => sessions.isOnline(agent), log, holders: imageHolders })
  const registry = new AgentRegistry({
    accepting: () => lease.leader,
    node,
    store,
    sessions,
    clock,
    admit: async (joinToken, who) => await tokens.useJoinToken(joinToken, who),
    heartbeatMs: config.heartbeatMs,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    log,
    lifecycle: dispatcher,
    handlers: watch.observe({ ...dispatcher.handlers, ...distributions.handlers, ...imageWants.handlers }, log)
  })
  await registry.start()
  started.push(() => { registry.stop() })
  // Replicas on one PostgreSQL: only the lease holder takes agents, schedules and dispatches (leader-pg.ts); alone, this process always does.
  let leading = Promise.resolve()
  lease.on('change', leader => {
    if (leader) {
      // After the database came back, memory is reloaded from it before this process schedules from it.
      const recovered = store instanceof PgTransferStore ? store.recover() : Promise.resolve()
      leading = recovered.then(async () => { await registry.lead() })
        .catch(err => { log('could not take the agents of the previous leader offline', { error: String(err) }, 'warn') })
        .then(() => { if (lease.leader) dispatcher.start() })
    } else {
      dispatcher.stop()
      registry.resign()
    }
    log(leader ? 'leading: this coordinator takes agents, schedules and dispatches' : 'no longer leading: scheduling stopped here', { leader })
  })
  await lease.start()
  started.push(async () => { await lease.stop(); dispatcher.stop() })
  await leading
  store.on('transition', (rec, from) => logger.info({ transferId: rec.id, from, to: rec.state, attempt: rec.attempt, error: rec.state === 'failed' || rec.state === 'queued' ? rec.lastError?.code : undefined }, 'transfer state changed'))

  const api = buildApi({ store, tokenStore: tokens, audit: log, tenants: config.tenants, rateLimit: config.rateLimit, maxConnectionsPerAddress: config.maxConnectionsPerAddress, metricsToken: config.metricsToken, https, logger: false, onCancel: rec => dispatcher.onCancel(rec), imageHolders, onCancelDestination: async (rec, d) => await distributions.cancelDestination(rec, d), onAgentRemoved: name => registry.forget(name), agentLive: name => registry.live(name), metrics, events, watch })
  started.push(async () => { await api.close() })
  try {
    await api.listen({ host: config.apiHost, port: config.apiPort })
  } catch (err) {
    throw listenError(err, { what: 'the REST API', option: '--api-port (or --api-host)' }, config.apiHost, config.apiPort)
  }
  const address = api.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : config.apiPort
  const host = config.apiHost.includes(':') ? `[${config.apiHost}]` : config.apiHost
  const apiUrl = `${https !== undefined ? 'https' : 'http'}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`
  const multiaddrs = node.getMultiaddrs().map(String)
  log('coordinator started', { apiUrl, peerId: node.peerId.toString(), multiaddrs, store: describeStore(storeSpec) })
  events.start()

  return {
    apiUrl,
    peerId: node.peerId.toString(),
    multiaddrs,
    apiToken: apiTokens[0],
    joinToken: joinTokens[0],
    node,
    store,
    async stop () {
      await lease.stop()
      dispatcher.stop()
      registry.stop()
      await api.close()
      await events.close()
      metrics.close()
      await node.stop()
      // The token records may use the store's connections.
      await tokens.close()
      await store.close()
    }
  }
}
