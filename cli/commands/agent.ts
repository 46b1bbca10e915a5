import { writeFile, rename } from 'node:fs/promises'
import type { Command } from 'commander'
import { startAgent } from '../../agent/index.ts'
import { collect, parseIntOption, parseRate, parseVolume } from '../options.ts'
import { parseSize } from '../../protocols/index.ts'
import { stopOnSignals } from './coordinator.ts'

export function agentCommand (program: Command): void {
  program.command('agent')
    .description('run an agent: serves its volumes to other agents and runs transfers')
    .requiredOption('--coordinator <multiaddr>', 'coordinator mesh address ending in /p2p/<peer id>', process.env.STACCATO_COORDINATOR)
    .requiredOption('--name <name>', 'this agent\'s name, unique in the mesh', process.env.STACCATO_AGENT_NAME)
    .option('--volume <name=path[:ro]>', 'export a directory as a volume (repeatable)', collect, [])
    .option('--data-dir <dir>', 'identity key and journal', process.env.STACCATO_DATA_DIR)
    .option('--listen <multiaddr>', 'mesh listen address (repeatable)', collect, [])
    .option('--join-token <token>', 'join token for the first registration', process.env.STACCATO_JOIN_TOKEN)
    .option('--plugin <specifier>', 'load a third-party protocol plug-in (repeatable)', collect, [])
    .option('--max-upload-rate <bytes/s>', 'cap on bytes sent per second, e.g. 100MiB')
    .option('--max-download-rate <bytes/s>', 'cap on bytes received per second')
    .option('--sync-every <size>', 'sync the partial file and journal the offset after this many bytes', '16MiB')
    .option('--status-port <port>', 'serve JSON counters on 127.0.0.1:<port>/status')
    .option('--ready-file <file>', 'write peer id, addresses and status URL here once started')
    .option('--log-level <level>', 'trace, debug, info, warn, error', process.env.STACCATO_LOG_LEVEL ?? 'info')
    .action(async (o: Record<string, string & string[]>) => {
      const agent = await startAgent({
        name: o.name,
        coordinator: o.coordinator,
        dataDir: o.dataDir ?? `./.staccato/agents/${o.name}`,
        listen: o.listen.length > 0 ? o.listen : ['/ip4/0.0.0.0/tcp/0'],
        volumes: o.volume.map(parseVolume),
        plugins: o.plugin,
        joinToken: o.joinToken,
        maxUploadRate: parseRate('--max-upload-rate', o.maxUploadRate),
        maxDownloadRate: parseRate('--max-download-rate', o.maxDownloadRate),
        statusPort: o.statusPort !== undefined ? parseIntOption('--status-port', o.statusPort) : undefined,
        syncEveryBytes: parseSize(o.syncEvery),
        syncEveryMs: 1000,
        logLevel: o.logLevel
      }, err => {
        process.stderr.write(`staccato agent: ${err.message}\n`)
        process.exit(2)
      })
      if (o.readyFile !== undefined) {
        const info = { name: agent.name, peerId: agent.node.peerId.toString(), addrs: agent.node.getMultiaddrs().map(String), statusUrl: agent.statusUrl }
        await writeFile(`${o.readyFile}.tmp`, JSON.stringify(info))
        await rename(`${o.readyFile}.tmp`, o.readyFile)
      }
      stopOnSignals(async () => { await agent.stop() })
    })
}
