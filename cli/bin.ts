#!/usr/bin/env node
import { Command } from 'commander'
import { StaccatoError } from '../mesh/index.ts'
import { coordinatorCommand } from './commands/coordinator.ts'
import { agentCommand } from './commands/agent.ts'
import { demoCommand } from './commands/demo.ts'

const program = new Command('staccato')
  .description('Move data directly between hosts, resume after crashes, share pieces.')
  .showHelpAfterError()
coordinatorCommand(program)
agentCommand(program)
demoCommand(program)

try {
  await program.parseAsync()
} catch (err) {
  // A user's mistake gets one clear line, not a stack trace.
  if (err instanceof StaccatoError) {
    process.stderr.write(`staccato: ${err.message}\n`)
    process.exit(2)
  }
  throw err
}
