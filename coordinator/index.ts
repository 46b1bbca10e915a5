/**
 * coordinator/: REST API, store, scheduler plug-ins, agent registry, dispatch.
 * Imports mesh/ only: it checks locations (mesh/location.ts) but never opens a
 * plug-in, which agents do. DESIGN.md would allow protocols/ too.
 */
export { startCoordinator } from './coordinator.ts'
export type { Coordinator, CoordinatorConfig } from './coordinator.ts'
export { TransferStore } from './store.ts'
export { parseStoreSpec, openStore } from './store-open.ts'
export { migrateLevelToPostgres } from './store-migrate.ts'
export type { MigrationCounts } from './store-migrate.ts'
export type { StoreSpec } from './store-open.ts'
export { buildApi, parseTenantPolicy, DEFAULT_RATE_LIMIT } from './api/index.ts'
export type { TenantPolicy, RateLimitOptions } from './api/index.ts'
export { TokenStore } from './tokens.ts'
export type { ApiTokenView, JoinTokenView } from './tokens.ts'
export { fifo, createScheduler, schedulerView } from './scheduler/index.ts'
export type { Scheduler, SchedulerView, Decision } from './scheduler/index.ts'
export type { TransferRecord, TransferState, AgentRecord, StoreEvent } from './model.ts'
export type { FeedPage } from './events/index.ts'
export { DEFAULT_EVENTS_CONFIG } from './events/index.ts'
export { choosePeers, PEERS_PER_PARTICIPANT, SEED_FANOUT } from './peer-set.ts'
export type { PeerSetInput } from './peer-set.ts'
export { leaseHolderPid } from './leader-pg.ts'
