import type { CoordinatorConfig } from '../coordinator/index.ts'
import { DEFAULT_EVENTS_CONFIG, createScheduler, parseStoreSpec } from '../coordinator/index.ts'
import { parseAddressAllow } from '../mesh/index.ts'
import { ConfigError, SECTIONS, loadConfigFile, resolveOptions } from './config.ts'
import type { OptionSpec } from './config.ts'


/** The options of `staccato coordinator` that the file can set too (the TLS, tenants and rate-limit flags are its own); docs/configuration.md lists the same (a test checks). */
export const COORDINATOR_OPTIONS: readonly OptionSpec[] = [
  { key: 'dataDir', flag: '--data-dir <dir>', env: 'STACCATO_DATA_DIR', kind: 'path', default: './.staccato/coordinator', description: 'store, identity key and generated tokens' },
  { key: 'store', flag: '--store <store>', env: 'STACCATO_STORE', kind: 'string', description: 'leveldb:<dir> (embedded; default leveldb:<data dir>/store) or postgres://user@host/database' },
  { key: 'apiHost', flag: '--api-host <host>', env: 'STACCATO_API_HOST', kind: 'string', default: '127.0.0.1', description: 'REST listen address' },
  { key: 'apiPort', flag: '--api-port <port>', env: 'STACCATO_API_PORT', kind: 'port', default: 7700, description: 'REST listen port (0 picks one)' },
  { key: 'maxConnectionsPerAddress', flag: '--max-connections-per-address <n>', env: 'STACCATO_MAX_CONNECTIONS_PER_ADDRESS', kind: 'int', default: 64, description: 'open REST connections one client address (an IPv6 /64) may hold; 0: no cap (behind a reverse proxy every client has its address)' },
  { key: 'listen', flag: '--listen <multiaddr>', env: 'STACCATO_LISTEN', kind: 'list', default: ['/ip4/127.0.0.1/tcp/7701'], description: 'mesh listen address' },
  { key: 'apiTokens', flag: '--api-token <token>', env: 'STACCATO_API_TOKEN', kind: 'list', description: 'accepted API bearer token; when none, one is generated into the data dir' },
  { key: 'joinTokens', flag: '--join-token <token>', env: 'STACCATO_JOIN_TOKEN', kind: 'list', description: 'accepted agent join token; when none, one is generated into the data dir' },
  { key: 'metricsToken', flag: '--metrics-token <token>', env: 'STACCATO_METRICS_TOKEN', kind: 'string', description: 'bearer token that may read /metrics and nothing else (an admin token for all tenants may too)' },
  { key: 'scheduler', flag: '--scheduler <name>', env: 'STACCATO_SCHEDULER', kind: 'string', default: 'fifo', description: 'scheduler plug-in' },
  { key: 'maxActive', flag: '--max-active <n>', env: 'STACCATO_MAX_ACTIVE', kind: 'int', default: 64, description: 'transfers running at once' },
  { key: 'maxPerAgent', flag: '--max-per-agent <n>', env: 'STACCATO_MAX_PER_AGENT', kind: 'int', default: 8, description: 'transfers running at once per agent' },
  { key: 'heartbeatTimeout', flag: '--heartbeat-timeout <ms>', env: 'STACCATO_HEARTBEAT_TIMEOUT', kind: 'int', default: 15000, description: 'an agent silent this long is offline' },
  { key: 'retryBase', flag: '--retry-base <ms>', env: 'STACCATO_RETRY_BASE', kind: 'int', default: 2000, description: 'first retry delay (doubles per attempt, with jitter)' },
  { key: 'retryMax', flag: '--retry-max <ms>', env: 'STACCATO_RETRY_MAX', kind: 'int', default: 300000, description: 'longest retry delay' },
  { key: 'pieceSize', flag: '--piece-size <size>', env: 'STACCATO_PIECE_SIZE', kind: 'size', default: '4MiB', description: 'piece size of distributions (one source to many destinations); larger objects get larger pieces (at most 8192 pieces)' },
  { key: 'ticketTtl', flag: '--ticket-ttl <seconds>', env: 'STACCATO_TICKET_TTL', kind: 'int', default: 3600, description: 'how long a data ticket signed for an agent stays valid' },
  { key: 'logLevel', flag: '--log-level <level>', env: 'STACCATO_LOG_LEVEL', kind: 'level', default: 'info', description: 'trace, debug, info, warn, error, fatal or silent' },
  { key: 'eventRetentionAge', flag: '--event-retention-age <ms>', env: 'STACCATO_EVENT_RETENTION_AGE', kind: 'int', default: DEFAULT_EVENTS_CONFIG.retention.maxAgeMs, description: 'events older than this are deleted from the change feed' },
  { key: 'eventRetentionCount', flag: '--event-retention-count <n>', env: 'STACCATO_EVENT_RETENTION_COUNT', kind: 'int', default: DEFAULT_EVENTS_CONFIG.retention.maxCount, description: 'at most this many events are kept' },
  { key: 'retentionInterval', flag: '--retention-interval <ms>', env: 'STACCATO_RETENTION_INTERVAL', kind: 'int', default: DEFAULT_EVENTS_CONFIG.retention.intervalMs, description: 'how often retention runs' },
  { key: 'progressEventInterval', flag: '--progress-event-interval <ms>', env: 'STACCATO_PROGRESS_EVENT_INTERVAL', kind: 'int', default: 5000, description: 'at most one progress event per transfer this often (0: none)' },
  { key: 'stalledAfter', flag: '--stalled-after <ms>', env: 'STACCATO_STALLED_AFTER', kind: 'int', default: DEFAULT_EVENTS_CONFIG.stalled.afterMs, description: 'an active transfer without progress this long gets a transfer.<id>.stalled event' },
  { key: 'webhookAllow', flag: '--webhook-allow <class|cidr>', env: 'STACCATO_WEBHOOK_ALLOW', kind: 'list', default: [], description: 'let webhooks reach loopback, link-local, metadata or private addresses, or a range such as 10.1.0.0/16 (refused by default)' },
  { key: 'webhookRetrySchedule', flag: '--webhook-retry-schedule <ms,...>', env: 'STACCATO_WEBHOOK_RETRY_SCHEDULE', kind: 'string', default: DEFAULT_EVENTS_CONFIG.delivery.retryScheduleMs.join(','), description: 'delay before each webhook retry (± jitter); after the last the delivery fails' },
  { key: 'webhookTimeout', flag: '--webhook-timeout <ms>', env: 'STACCATO_WEBHOOK_TIMEOUT', kind: 'int', default: DEFAULT_EVENTS_CONFIG.delivery.timeoutMs, description: 'a webhook endpoint must answer within this' },
  { key: 'webhookClaim', flag: '--webhook-claim <ms>', env: 'STACCATO_WEBHOOK_CLAIM', kind: 'int', default: DEFAULT_EVENTS_CONFIG.delivery.claimMs, description: 'replicas on PostgreSQL: how long a webhook delivery stays claimed by the replica making it (a dead replica\'s are taken over after this; at least the webhook timeout plus 1 s)' },
  { key: 'webhookInterval', flag: '--webhook-interval <ms>', env: 'STACCATO_WEBHOOK_INTERVAL', kind: 'int', default: DEFAULT_EVENTS_CONFIG.delivery.intervalMs, description: 'how often due webhook retries are looked for' },
  { key: 'sseHeartbeat', flag: '--sse-heartbeat <ms>', env: 'STACCATO_SSE_HEARTBEAT', kind: 'int', default: DEFAULT_EVENTS_CONFIG.stream.heartbeatMs, description: 'comment line this often on idle event streams' }
]

// The coordinator pings each agent three times per heartbeat timeout; below this it would mostly ping.
const MIN_HEARTBEAT_TIMEOUT_MS = 750

/** Builds the coordinator's configuration from flags (Commander's opts), environment and the config file. */
export async function coordinatorConfig (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Promise<CoordinatorConfig> {
  const file = await loadConfigFile((flags.config as string | undefined) ?? env.STACCATO_CONFIG, SECTIONS)
  const { values: v, origin } = resolveOptions('coordinator', COORDINATOR_OPTIONS, flags, env, file)
  const heartbeatTimeout = v.heartbeatTimeout as number
  if (heartbeatTimeout < MIN_HEARTBEAT_TIMEOUT_MS) throw new ConfigError(`${origin.heartbeatTimeout} '${heartbeatTimeout}' must be at least ${MIN_HEARTBEAT_TIMEOUT_MS} ms`)
  if ((v.maxActive as number) < 1) throw new ConfigError(`${origin.maxActive} must be at least 1`)
  if ((v.maxPerAgent as number) < 1) throw new ConfigError(`${origin.maxPerAgent} must be at least 1`)
  if ((v.retryMax as number) < (v.retryBase as number)) throw new ConfigError(`${origin.retryMax} (${String(v.retryMax)}) must not be below retryBase (${String(v.retryBase)})`)
  // The swarm's control messages refuse smaller pieces: below this, per-piece overhead dominates.
  if ((v.pieceSize as number) < 64 * 1024) throw new ConfigError(`${origin.pieceSize} must be at least 64KiB`)
  if ((v.listen as string[]).length === 0) throw new ConfigError(`${origin.listen} must name at least one address`)
  const scheduler = { name: v.scheduler as string, maxActive: v.maxActive as number, maxPerAgent: v.maxPerAgent as number }
  try {
    createScheduler(scheduler.name, { maxActive: scheduler.maxActive, maxPerAgent: scheduler.maxPerAgent })
  } catch (err) {
    throw new ConfigError(`${origin.scheduler}: ${(err as Error).message}`)
  }
  const retrySchedule = (v.webhookRetrySchedule as string).split(',').map(Number)
  if (retrySchedule.some(ms => !Number.isSafeInteger(ms) || ms < 0)) throw new ConfigError(`${origin.webhookRetrySchedule} must be comma-separated whole numbers of ms`)
  let allow
  try {
    allow = parseAddressAllow(v.webhookAllow as string[])
  } catch (err) {
    throw new ConfigError(`${origin.webhookAllow}: ${(err as Error).message}`)
  }
  let store
  try {
    store = v.store !== undefined ? parseStoreSpec(v.store as string) : undefined
  } catch (err) {
    throw new ConfigError(`${origin.store}: ${(err as Error).message}`)
  }
  return {
    dataDir: v.dataDir as string,
    store,
    apiHost: v.apiHost as string,
    apiPort: v.apiPort as number,
    maxConnectionsPerAddress: v.maxConnectionsPerAddress as number,
    metricsToken: v.metricsToken as string | undefined,
    listen: v.listen as string[],
    apiTokens: (v.apiTokens as string[] | undefined) ?? [],
    joinTokens: (v.joinTokens as string[] | undefined) ?? [],
    scheduler,
    heartbeatMs: Math.max(250, Math.floor(heartbeatTimeout / 3)),
    heartbeatTimeoutMs: heartbeatTimeout,
    retryBaseMs: v.retryBase as number,
    retryMaxMs: v.retryMax as number,
    ticketTtlSeconds: v.ticketTtl as number,
    pieceSize: v.pieceSize as number,
    logLevel: v.logLevel as string,
    progressEventMs: v.progressEventInterval as number,
    events: {
      retention: { maxAgeMs: v.eventRetentionAge as number, maxCount: v.eventRetentionCount as number, intervalMs: Math.max(100, v.retentionInterval as number) },
      stalled: { afterMs: v.stalledAfter as number, intervalMs: Math.max(100, Math.min(DEFAULT_EVENTS_CONFIG.stalled.intervalMs, Math.floor((v.stalledAfter as number) / 4))) },
      delivery: { retryScheduleMs: retrySchedule, timeoutMs: Math.max(100, v.webhookTimeout as number), intervalMs: Math.max(10, v.webhookInterval as number), claimMs: Math.max(v.webhookClaim as number, Math.max(100, v.webhookTimeout as number) + 1000) },
      allow,
      stream: { heartbeatMs: Math.max(100, v.sseHeartbeat as number) }
    }
  }
}
