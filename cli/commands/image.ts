import type { Command } from 'commander'
import { addClientOptions, connect, printJson, usageError } from '../client.ts'
import type { ClientFlags } from '../client.ts'
import { follow } from '../follow.ts'
import type { Transfer } from '../follow.ts'
import { progressDisplay } from '../progress.ts'
import { finish } from './transfer.ts'

interface Flags extends ClientFlags { json?: boolean, agent?: string[], label?: string[], via?: string, volume?: string, wait?: boolean }

export function imageCommand (program: Command): void {
  const image = program.command('image').description('container and VM images from OCI registries (see docs/images.md)')

  addClientOptions(image.command('preheat')
    .description('distribute every blob of IMAGE to the agents named, ahead of their first pull through their registry mirror')
    .argument('<image>', 'oci://registry/repository:tag (or @sha256:…)')
    .option('--agent <name>', 'an agent to preheat (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--label <key=value>', 'instead of --agent: every agent labelled so (repeatable: all of them must hold)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--via <agent>', 'the agent that reads the registry (default: the one that seeded the image last if online, else the first agent)')
    .option('--volume <name>', 'the volume each agent keeps the image in (default: its first writable volume)')
    .option('--wait', 'follow the distribution to its end, with progress; exit 1 if it fails'))
    .action(async (ref: string, o: Flags) => {
      if ((o.agent === undefined) === (o.label === undefined)) throw usageError('name the agents to preheat with --agent, or select them with --label (not both)')
      const labels: Record<string, string> = {}
      for (const text of o.label ?? []) {
        const eq = text.indexOf('=')
        if (eq < 1) throw usageError(`--label '${text}' is not key=value`)
        labels[text.slice(0, eq)] = text.slice(eq + 1)
      }
      const client = await connect(o)
      const created = await client.request<Transfer>('POST', '/v1/images/preheat', {
        body: { image: ref, ...(o.agent !== undefined ? { agents: o.agent } : { labels }), ...(o.via !== undefined ? { via: o.via } : {}), ...(o.volume !== undefined ? { volume: o.volume } : {}) }
      })
      if (o.wait !== true) {
        if (o.json === true) printJson(created)
        else process.stdout.write(`${created.id}  ${created.state}\n`)
        return
      }
      if (o.json !== true) process.stdout.write(`preheating ${created.id}\n`)
      const [done] = await follow(client, [created.id], o.json === true ? undefined : progressDisplay())
      finish(done, o.json === true)
    })
}
