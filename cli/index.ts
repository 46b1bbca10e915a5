/**
 * cli/: the `staccato` command (run by bin.ts). This entry is what scripts/
 * and tests share with the CLI: starting `staccato` processes and reading the
 * coordinator's ready file. It loads nothing but node: modules, so a script
 * that imports it does not pay for libp2p or Fastify.
 */
import type { AgentSeams } from '../agent/index.ts'
export { BIN, spawnStaccato, waitForJson, stopProcess, freePort } from './processes.ts'
export { executable, postgresBinDir, postgresMissing, startPostgres } from './postgres-cluster.ts'
export type { Postgres } from './postgres-cluster.ts'
export type { SpawnOptions } from './processes.ts'
export type { ReadyInfo } from './commands/coordinator.ts'

/**
 * Runs `staccato agent <argv>` in this process with seams composed in: a
 * test's agent process with fault-injecting wrappers (test/fixtures/faulty-agent.ts)
 * takes the command's options and behaviour as they are. Loaded on call, so
 * that importing this entry still loads node: modules only.
 */
export async function runAgent (argv: string[], seams: AgentSeams): Promise<void> {
  const { Command } = await import('commander')
  const { agentCommand } = await import('./commands/agent.ts')
  const program = new Command('staccato')
  agentCommand(program, seams)
  await program.parseAsync(['agent', ...argv], { from: 'user' })
}
