import type { Command } from 'commander'
import { addClientOptions, connect, printJson, table } from '../client.ts'
import type { ApiClient, ClientFlags } from '../client.ts'
import { formatBytes } from '../progress.ts'
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
          ['last seen:', lastSeen(a)]
        ]))
        return
      }
      const { items } = await client.request<{ items: AgentView[] }>('GET', '/v1/agents')
      if (o.json === true) { printJson({ items }); return }
      if (items.length === 0) { process.stdout.write('no agents enrolled\n'); return }
      const load = await activeLoad(client)
      process.stdout.write(table([
        ['NAME', 'ONLINE', 'ACTIVE', 'RATE', 'VERSION', 'VOLUMES', 'LAST SEEN'],
        ...items.map(a => {
          const l = load.get(a.name)
          return [a.name, a.online ? 'yes' : 'no', String(l?.count ?? 0), l !== undefined && l.rate > 0 ? `${formatBytes(l.rate)}/s` : '-', a.version, volumes(a) || '-', lastSeen(a)]
        })
      ]))
      if (load.partial) process.stdout.write(`(load counted over the first ${LOAD_MAX} active transfers)\n`)
    })
}

/** Active transfers read for the load columns, at most: a glance, not an inventory. */
const LOAD_MAX = 5000
const LOAD_PAGE = 1000

interface ActiveTransfer { agents: string[], executor?: string, progress: { rate: number } }

/**
 * Per agent, the active transfers it takes part in and the rate of those it
 * runs (the executor moves the bytes; counting the rate at both ends would
 * double it).
 */
async function activeLoad (client: ApiClient): Promise<Map<string, { count: number, rate: number }> & { partial?: boolean }> {
  const load: Map<string, { count: number, rate: number }> & { partial?: boolean } = new Map()
  let after: string | undefined
  let seen = 0
  while (seen < LOAD_MAX) {
    const page = await client.request<{ items: ActiveTransfer[], next?: string }>('GET', '/v1/transfers', { query: { state: 'active', after, limit: LOAD_PAGE } })
    for (const t of page.items) {
      for (const agent of new Set([...t.agents, ...(t.executor !== undefined ? [t.executor] : [])])) {
        const l = load.get(agent) ?? { count: 0, rate: 0 }
        l.count++
        if (agent === t.executor) l.rate += t.progress.rate
        load.set(agent, l)
      }
    }
    seen += page.items.length
    if (page.next === undefined || page.items.length === 0) return load
    after = page.next
  }
  load.partial = true
  return load
}

/** An online agent heartbeats every few seconds: its record's time is when it registered, not when it was last heard. */
function lastSeen (a: AgentView): string {
  return a.online ? 'now (online)' : a.lastSeenAt
}

function volumes (a: AgentView): string {
  // `free` comes with an online agent's heartbeats (coordinator/api/agents.ts).
  return (a.volumes as Array<{ name: string, readOnly: boolean, free?: number }>)
    .map(v => `${v.name}${v.readOnly ? ' (ro)' : ''}${v.free !== undefined ? ` (${formatBytes(v.free)} free)` : ''}`).join(', ')
}
