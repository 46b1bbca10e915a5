#!/usr/bin/env node
import { enableCompileCache } from 'node:module'
import { readFileSync } from 'node:fs'
import { setFlagsFromString } from 'node:v8'
import { Command, CommanderError } from 'commander'
import { CliError } from './client.ts'
import { demoCommand } from './commands/demo.ts'
import { transferCommand } from './commands/transfer.ts'
import { imageCommand } from './commands/image.ts'
import { agentsCommand } from './commands/agents.ts'
import { eventsCommand } from './commands/events.ts'
import { tokenCommands } from './commands/token.ts'

// An agent or coordinator spends about a CPU-second compiling libp2p, Fastify
// and our own modules at every start; V8's code cache on disk (keyed by each
// file's contents, so never stale) cuts that by a third, which matters when a
// host restarts many agents at once, and in CI where tests start hundreds.
enableCompileCache()

// Read here, not through mesh/ (PACKAGE_VERSION), which would load libp2p for every client command.
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

const program = new Command('staccato')
  .description('Move data directly between hosts, resume after crashes, share pieces.')
  .version(version, '-V, --version', 'print the version')
  .showHelpAfterError()
  // Commander's own errors (unknown option, missing argument) exit 2, like ours: caught below.
  .exitOverride()

// `coordinator` and `agent` load the coordinator or the agent and libp2p
// (about a second); each loads only its own, and the client commands neither,
// so that they start at once.
const CLIENT_COMMANDS = new Set(['transfer', 'agents', 'events', 'demo', 'token', 'agent-token'])
const first = process.argv.slice(2).find(a => !a.startsWith('-'))
// --version alone needs no command loaded.
const versionOnly = first === undefined && process.argv.slice(2).some(a => a === '--version' || a === '-V')
if (first === 'agent') {
  // The data path allocates big buffers and few objects: a new space that does
  // not grow lets cheap scavenges free them, instead of a full GC every few
  // tens of MiB moved (half the receiving agent's CPU; docs/benchmarks.md).
  setFlagsFromString('--semi-space-growth-factor=1')
  // V8 sets the old generation's next limit a few MB above a ~30 MB live heap,
  // so the data path's trickle of promoted objects started a full GC every
  // 300-600 ms (a fifth of every agent's CPU in bench:swarm). Three times the
  // live heap: 6 full GCs instead of 35 per distribution, peak RSS unchanged
  // in bench:transfer (docs/benchmarks.md).
  setFlagsFromString('--heap-growing-percent=200')
}
if (!versionOnly && first !== 'agent' && (first === undefined || !CLIENT_COMMANDS.has(first))) {
  const { coordinatorCommand } = await import('./commands/coordinator.ts')
  coordinatorCommand(program)
}
if (!versionOnly && first !== 'coordinator' && (first === undefined || !CLIENT_COMMANDS.has(first))) {
  const { agentCommand } = await import('./commands/agent.ts')
  agentCommand(program)
}
demoCommand(program)
transferCommand(program)
imageCommand(program)
agentsCommand(program)
eventsCommand(program)
tokenCommands(program)

try {
  await program.parseAsync()
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2)
  // A user's mistake gets one clear line, not a stack trace: exit 2 for a wrong command line, 1 for an operation that failed.
  if (err instanceof CliError) fail(err.message, err.exitCode)
  const { StaccatoError } = await import('../mesh/index.ts')
  if (err instanceof StaccatoError) fail(err.message, 2)
  throw err
}

function fail (message: string, exitCode: number): never {
  process.stderr.write(`staccato: ${message}\n`)
  process.exit(exitCode)
}
