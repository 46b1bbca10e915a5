/** coordinator/: REST API, store, scheduler plug-ins, agent registry, dispatch. Imports mesh/ (and protocols/) only. */
export { startCoordinator } from './coordinator.ts'
export type { Coordinator, CoordinatorConfig } from './coordinator.ts'
export { TransferStore } from './store.ts'
export { buildApi } from './api/index.ts'
export { fifo, createScheduler } from './scheduler/index.ts'
export type { Scheduler, SchedulerView, Decision } from './scheduler/index.ts'
export type { TransferRecord, TransferState, AgentRecord } from './model.ts'
