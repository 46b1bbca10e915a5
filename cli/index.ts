/**
 * cli/: the `staccato` command (run by bin.ts). This entry is what scripts/
 * and tests share with the CLI: starting `staccato` processes and reading the
 * coordinator's ready file. It loads nothing but node: modules, so a script
 * that imports it does not pay for libp2p or Fastify.
 */
export { BIN, spawnStaccato, waitForJson, stopProcess, freePort } from './processes.ts'
export type { SpawnOptions } from './processes.ts'
export type { ReadyInfo } from './commands/coordinator.ts'
