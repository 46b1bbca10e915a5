import type { Command } from 'commander'
import { addClientOptions, connect, printJson, table } from '../client.ts'
import type { ClientFlags } from '../client.ts'
// Type only (erased at run time): the client does not load the coordinator.
import type { AgentRecord as AgentView } from '../../coordinator/index.ts'

export function agentsCommand (program: Command): void {
  const agents = program.command('agents')
  addClientOptions(agents.command('rm')
    .description('remove an enrolled agent (admin): to decommission its host, or to enroll it again with a new key and a join token; stop the agent first')
    .argument('<name>', 'the agent\'s name')
    .option('--force', 'fail the transfers it takes part in, instead of refusing while there are any'))
    .action(async (name: string, o: ClientFlags & { force?: boolean, json?: boolean }) => {
      const client = await connect(o)
      await client.request('DELETE', `/v1/agents/${encodeURIComponent(name)}`, { query: { force: o.force === true ? 'true' : undefined } })
      if (o.json === true) printJson({ removed: name })
      else process.stdout.write(`removed agent ${name}\n`)
    })
  addClientOptions(agents
    .description('list the enrolled agents, or show one (talks to the REST API)')
    .argument('[name]', 'one agent\'s name'))
    .action(async (name: string | undefined, o: ClientFlags & { json?: boolean }) => {
      const client = await connect(o)
      if (name !== undefined) {
        const a = await client.request<AgentView>('GET', `/v1/agents/${encodeURIComponent(name)}`)
        if (o.json === true) { printJson(a); return }
        process.stdout.write(table([
          ['name:', a.name],
          ['online:', a.online ? 'yes' : 'no'],
          ['peer id:', a.peerId],
          ['version:', a.version],
          ['volumes:', volumes(a) || '-'],
          ['plug-ins:', a.plugins.join(', ')],
          ['addresses:', a.addrs.join(' ')],
          ['enrolled:', a.enrolledAt],
          ['last seen:', a.lastSeenAt]
        ]))
        return
      }
      const { items } = await client.request<{ items: AgentView[] }>('GET', '/v1/agents')
      if (o.json === true) { printJson({ items }); return }
      if (items.length === 0) { process.stdout.write('no agents enrolled\n'); return }
      process.stdout.write(table([
        ['NAME', 'ONLINE', 'VERSION', 'VOLUMES', 'LAST SEEN'],
        ...items.map(a => [a.name, a.online ? 'yes' : 'no', a.version, volumes(a) || '-', a.lastSeenAt])
      ]))
    })
}

function volumes (a: AgentView): string {
  return a.volumes.map(v => `${v.name}${v.readOnly ? ' (ro)' : ''}`).join(', ')
}
