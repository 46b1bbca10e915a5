import { access } from 'node:fs/promises'
import type { Command } from 'commander'
import { CliError, printJson, table, usageError } from '../client.ts'
import { SECTIONS, loadConfigFile, resolveOptions } from '../config.ts'
import { AGENT_OPTIONS } from '../config-agent.ts'
import { formatBytes } from '../progress.ts'

/** Where scripts/install-agent.sh puts the agent's configuration. */
export const INSTALLED_CONFIG = '/etc/staccato/agent.yaml'

interface Status {
  name: string
  peerId: string
  version?: string
  coordinator?: { address: string, connected: boolean, registered: boolean }
  volumes?: Array<{ name: string, root: string, readOnly: boolean }>
  active: string[]
  counters: Record<string, number | Record<string, number>>
}

export function agentStatusCommand (agent: Command): void {
  agent.command('status')
    .description(`show a running agent's status, read from its status port on this host (port from --status-port, STACCATO_STATUS_PORT or the config file, default ${INSTALLED_CONFIG})`)
    // Declared here for --help; Commander hands them to `agent`, which declares them too (read through optsWithGlobals).
    .option('--status-port <port>', 'the agent\'s status port on 127.0.0.1 (env STACCATO_STATUS_PORT; else agent.statusPort in the config file)')
    .option('--config <file>', `the agent's config file (env STACCATO_CONFIG; default ${INSTALLED_CONFIG} when it exists)`)
    .option('--json', 'print the status as JSON')
    .action(async (_o: unknown, cmd: Command) => {
      // Options written after `status` that `agent` also has (--config, --status-port) land on the parent.
      const o = cmd.optsWithGlobals<Record<string, unknown>>()
      let config = (o.config as string | undefined) ?? process.env.STACCATO_CONFIG
      if (config === undefined && await access(INSTALLED_CONFIG).then(() => true, () => false)) config = INSTALLED_CONFIG
      const file = await loadConfigFile(config, SECTIONS)
      // The agent's own file (the installer's has name, coordinator, volumes…): checked whole, only its status port used.
      const { values } = resolveOptions('agent', AGENT_OPTIONS.filter(s => s.key === 'statusPort'), o, process.env, file, AGENT_OPTIONS)
      const port = values.statusPort as number | undefined
      if (port === undefined || port === 0) {
        throw usageError(`no status port: pass --status-port, set STACCATO_STATUS_PORT, or set agent.statusPort in ${config ?? INSTALLED_CONFIG}`)
      }
      const url = `http://127.0.0.1:${port}/status`
      let status: Status
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
        if (!res.ok) throw new Error(`HTTP ${res.status}`)
        status = await res.json() as Status
      } catch (err) {
        const e = err as { cause?: { code?: string }, message?: string }
        throw new CliError('unavailable', `cannot reach the agent at ${url}: ${e.cause?.code ?? e.message ?? String(err)} — is it running? (systemctl status staccato-agent)`, 1)
      }
      if (o.json === true) { printJson(status); return }
      process.stdout.write(render(status))
    })
}

function render (s: Status): string {
  const c = s.counters
  const bytes = (v: unknown): string => typeof v === 'object' && v !== null
    ? Object.entries(v as Record<string, number>).map(([p, n]) => `${p} ${formatBytes(n)}`).join(', ') || '0 B'
    : formatBytes(Number(v ?? 0))
  const coord = s.coordinator === undefined
    ? 'unknown'
    : `${s.coordinator.address} (${s.coordinator.connected ? 'connected' : 'NOT connected'}${s.coordinator.registered ? ', registered' : ', not registered yet'})`
  return table([
    ['name:', s.name],
    ['peer id:', s.peerId],
    ['version:', s.version ?? '?'],
    ['coordinator:', coord],
    ['volumes:', (s.volumes ?? []).map(v => `${v.name}=${v.root}${v.readOnly ? ':ro' : ''}`).join(', ') || '-'],
    ['active:', s.active.length === 0 ? 'none' : `${s.active.length}: ${s.active.join(', ')}`],
    ['bytes in:', bytes(c.bytesIn)],
    ['bytes out:', bytes(c.bytesOut)],
    ['served:', `${formatBytes(Number(c.bytesServed ?? 0))} in ${String(c.dataRequests ?? 0)} requests (${String(c.dataRefused ?? 0)} refused)`],
    ['transfers:', `${String(c.transfersSucceeded ?? 0)} succeeded, ${String(c.transfersFailed ?? 0)} failed`],
    ['journal:', `${String(c.journalCommits ?? 0)} writes`],
    ['swarm:', `${String(c.swarmPiecesServed ?? 0)} pieces served`]
  ])
}
