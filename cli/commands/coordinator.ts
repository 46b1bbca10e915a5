import { readFile, writeFile, rename } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Command } from 'commander'
import { parse as parseYaml } from 'yaml'
import { DEFAULT_RATE_LIMIT, migrateLevelToPostgres, parseStoreSpec, parseTenantPolicy, startCoordinator } from '../../coordinator/index.ts'
import type { CoordinatorConfig } from '../../coordinator/index.ts'
import { ConfigError, addConfigOptions } from '../config.ts'
import { COORDINATOR_OPTIONS, coordinatorConfig } from '../config-coordinator.ts'
import { stopOnSignals } from '../processes.ts'
import { apiUrls, meshAddressLines } from '../addresses.ts'

export interface ReadyInfo {
  apiUrl: string
  peerId: string
  multiaddrs: string[]
  apiToken: string
  joinToken: string
}

export function coordinatorCommand (program: Command): void {
  const cmd = program.command('coordinator')
    .description('run the coordinator: REST API, store, scheduler, agent registry')
  addConfigOptions(cmd, COORDINATOR_OPTIONS)
    .option('--ready-file <file>', 'write API address, peer id and tokens here (0600) once listening')
    .option('--tls-cert <file>', 'serve the REST API over HTTPS with this PEM certificate (chain) (env STACCATO_TLS_CERT)', process.env.STACCATO_TLS_CERT)
    .option('--tls-key <file>', 'the PEM private key of --tls-cert (env STACCATO_TLS_KEY)', process.env.STACCATO_TLS_KEY)
    .option('--tenants-file <file>', 'JSON or YAML: which agents, volumes and schemes each tenant may use (env STACCATO_TENANTS_FILE)', process.env.STACCATO_TENANTS_FILE)
    .option('--rate-limit <n>', `API requests per minute per token; a tenth of it per address without a valid token (default ${DEFAULT_RATE_LIMIT.max})`, process.env.STACCATO_RATE_LIMIT)
    .action(async (o: Record<string, string>) => {
      const config = { ...await coordinatorConfig(o), ...await securityConfig(o) }
      const c = await startCoordinator(config)
      const ready: ReadyInfo = { apiUrl: c.apiUrl, peerId: c.peerId, multiaddrs: c.multiaddrs, apiToken: c.apiToken, joinToken: c.joinToken }
      if (o.readyFile !== undefined) {
        await writeFile(`${o.readyFile}.tmp`, JSON.stringify(ready), { mode: 0o600 })
        await rename(`${o.readyFile}.tmp`, o.readyFile)
      }
      process.stderr.write([
        `staccato coordinator: REST API ${apiUrls(c.apiUrl, config.apiHost).join(', ')}`,
        'staccato coordinator: agents join with --coordinator and one of:',
        ...meshAddressLines(c.multiaddrs).map(a => `  ${a}`),
        `staccato coordinator: API token in ${join(config.dataDir, 'api-token')}, join token in ${join(config.dataDir, 'join-token')} (unless given)`,
        ''
      ].join('\n'))
      stopOnSignals(async () => { await c.stop() }, 'staccato coordinator')
    })
  cmd.command('migrate')
    .description('move a stopped single-node coordinator\'s state (transfers, events, agents, webhooks, tokens) from LevelDB to an empty PostgreSQL database')
    .requiredOption('--from <store>', 'leveldb:<dir>, the store directory (by default <data dir>/store)')
    .requiredOption('--to <url>', 'postgres://user@host/database')
    .option('--tokens <dir>', 'the token store directory (default: tokens beside the store directory)')
    .action(async (o: { from: string, to: string, tokens?: string }) => {
      let from, to
      try {
        from = parseStoreSpec(o.from)
        to = parseStoreSpec(o.to)
      } catch (err) {
        throw new ConfigError((err as Error).message)
      }
      if (from.kind !== 'leveldb' || to.kind !== 'postgres') throw new ConfigError('migrate: --from leveldb:<dir> --to postgres://…')
      const counts = await migrateLevelToPostgres({ storeDir: from.dir, tokensDir: o.tokens ?? join(dirname(from.dir), 'tokens') }, to.url)
      process.stdout.write(`${JSON.stringify(counts)}\n`)
    })
}

/** TLS, the tenant allow-list and the API rate limit. */
async function securityConfig (o: Record<string, string | undefined>): Promise<Partial<CoordinatorConfig>> {
  const out: Partial<CoordinatorConfig> = {}
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new ConfigError('--tls-cert and --tls-key go together')
  if (o.tlsCert !== undefined && o.tlsKey !== undefined) out.tls = { certFile: o.tlsCert, keyFile: o.tlsKey }
  if (o.tenantsFile !== undefined) {
    let text: string
    try {
      text = await readFile(o.tenantsFile, 'utf8')
    } catch (err) {
      throw new ConfigError(`--tenants-file: cannot read ${o.tenantsFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
    }
    try {
      out.tenants = parseTenantPolicy(parseYaml(text), `--tenants-file ${o.tenantsFile}`)
    } catch (err) {
      throw new ConfigError((err as Error).message.split('\n')[0])
    }
  }
  if (o.rateLimit !== undefined) {
    const max = Number(o.rateLimit)
    if (!Number.isSafeInteger(max) || max < 1) throw new ConfigError(`--rate-limit '${o.rateLimit}' must be a whole number of requests per minute`)
    out.rateLimit = { max, unauthenticatedMax: Math.max(10, Math.ceil(max / 10)), windowMs: 60_000 }
  }
  return out
}
