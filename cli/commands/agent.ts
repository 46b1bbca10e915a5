import { writeFile, rename } from 'node:fs/promises'
import type { Command } from 'commander'
import { startAgent } from '../../agent/index.ts'
import type { AgentSeams } from '../../agent/index.ts'
import { addConfigOptions } from '../config.ts'
import { AGENT_OPTIONS, agentConfig } from '../config-agent.ts'
import { agentStatusCommand } from './agent-status.ts'
import { stopOnSignals } from '../processes.ts'

/** `seams`: what a test composes into the agent (cli/index.ts runAgent); none for the `staccato` command. */
export function agentCommand (program: Command, seams: AgentSeams = {}): void {
  const cmd = program.command('agent')
    .description('run an agent: serves its volumes to other agents and runs transfers')
  addConfigOptions(cmd, AGENT_OPTIONS)
    .option('--ready-file <file>', 'write peer id, addresses and status URL here once started')
    .action(async (o: Record<string, string>) => {
      const agent = await startAgent(await agentConfig(o), err => {
        process.stderr.write(`staccato agent: ${err.message}\n`)
        process.exit(2)
      }, seams)
      if (o.readyFile !== undefined) {
        const info = { name: agent.name, peerId: agent.node.peerId.toString(), addrs: agent.node.getMultiaddrs().map(String), statusUrl: agent.statusUrl }
        await writeFile(`${o.readyFile}.tmp`, JSON.stringify(info))
        await rename(`${o.readyFile}.tmp`, o.readyFile)
      }
      stopOnSignals(async () => { await agent.stop() }, 'staccato agent')
    })
  agentStatusCommand(cmd)
}
