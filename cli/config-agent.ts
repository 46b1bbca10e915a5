import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import type { AgentConfig } from '../agent/index.ts'
import { DEFAULT_TREE_STREAMS } from '../agent/index.ts'
import { MAX_STREAMS, isValidAgentName, parseAddressAllow } from '../mesh/index.ts'
import { ConfigError, SECTIONS, loadConfigFile, resolveOptions } from './config.ts'
import { loadRegistries } from './registries.ts'
import type { Volume } from './config.ts'
import type { OptionSpec } from './config.ts'

/** Every option of `staccato agent`; docs/configuration.md lists the same (a test checks). */
export const AGENT_OPTIONS: readonly OptionSpec[] = [
  { key: 'name', flag: '--name <name>', env: 'STACCATO_AGENT_NAME', kind: 'string', description: 'this agent\'s name, unique in the mesh (required)' },
  { key: 'coordinator', flag: '--coordinator <multiaddr>', env: 'STACCATO_COORDINATOR', kind: 'string', description: 'coordinator mesh address ending in /p2p/<peer id>, or a comma-separated list of replicas\' (required)' },
  { key: 'joinToken', flag: '--join-token <token>', env: 'STACCATO_JOIN_TOKEN', kind: 'string', description: 'join token for the first registration' },
  { key: 'dataDir', flag: '--data-dir <dir>', env: 'STACCATO_DATA_DIR', kind: 'path', description: 'identity key and journal (default ./.staccato/agents/<name>)' },
  { key: 'listen', flag: '--listen <multiaddr>', env: 'STACCATO_AGENT_LISTEN', kind: 'list', default: ['/ip4/0.0.0.0/tcp/0'], description: 'mesh listen address' },
  { key: 'dataListen', flag: '--data-listen <host:port|off>', env: 'STACCATO_DATA_LISTEN', kind: 'string', description: 'direct data port for bulk bytes between agents (host:port, a port alone, or off); beside the mesh listen address on a free port when unset' },
  { key: 'volumes', flag: '--volume <name=path[:ro]>', env: 'STACCATO_VOLUMES', kind: 'volumes', default: [], description: 'export a directory as a volume' },
  { key: 'plugins', flag: '--plugin <specifier>', env: 'STACCATO_PLUGINS', kind: 'list', default: [], description: 'load a third-party protocol plug-in' },
  { key: 'allowAddresses', flag: '--allow-address <class|cidr>', env: 'STACCATO_ALLOW_ADDRESSES', kind: 'list', default: [], description: 'let http(s) sources and destinations reach loopback, link-local, metadata or private addresses, or a range such as 10.1.0.0/16 (refused by default)' },
  { key: 'registriesFile', flag: '--registries-file <file>', env: 'STACCATO_REGISTRIES_FILE', kind: 'path', description: 'settings and credentials of the OCI registries oci:// sources read (see docs/images.md)' },
  { key: 'registryMirror', flag: '--registry-mirror <host:port>', env: 'STACCATO_REGISTRY_MIRROR', kind: 'string', description: 'serve pulls of the images --mirror-image allows, as a registry mirror, on this address (a port alone: 127.0.0.1); see docs/images.md' },
  { key: 'mirrorImages', flag: '--mirror-image <registry/repository>', env: 'STACCATO_MIRROR_IMAGES', kind: 'list', default: [], description: 'an image the registry mirror may serve: registry/repository, or registry/prefix/* (the first one\'s registry is the default upstream)' },
  { key: 'labels', flag: '--label <key=value>', env: 'STACCATO_AGENT_LABELS', kind: 'list', default: [], description: 'a label the coordinator can select this agent by, e.g. zone=eu-1 (image preheat by labels)' },
  { key: 'maxUploadRate', flag: '--max-upload-rate <bytes/s>', env: 'STACCATO_MAX_UPLOAD_RATE', kind: 'rate', default: 0, description: 'cap on bytes sent per second, e.g. 100MiB; 0 is unlimited' },
  { key: 'maxDownloadRate', flag: '--max-download-rate <bytes/s>', env: 'STACCATO_MAX_DOWNLOAD_RATE', kind: 'rate', default: 0, description: 'cap on bytes received per second; 0 is unlimited' },
  { key: 'syncEvery', flag: '--sync-every <size>', env: 'STACCATO_SYNC_EVERY', kind: 'size', default: '16MiB', description: 'sync the partial file and journal the offset after this many bytes' },
  { key: 'streams', flag: '--streams <n>', env: 'STACCATO_STREAMS', kind: 'int', default: 1, description: `data streams a transfer this agent runs pulls a large file on when the transfer does not say (1-${MAX_STREAMS}; files under 64 MiB use one)` },
  { key: 'treeStreams', flag: '--tree-streams <n>', env: 'STACCATO_TREE_STREAMS', kind: 'int', default: DEFAULT_TREE_STREAMS, description: `large files (1 MiB or more) of a tree this agent receives carried at once, each on its own data connection (1-${MAX_STREAMS})` },
  { key: 'directIo', flag: '--direct-io <auto|off>', env: 'STACCATO_DIRECT_IO', kind: 'string', default: 'auto', description: 'write received files past the page cache (O_DIRECT) where the file system takes it (auto), or through it (off)' },
  { key: 'statusPort', flag: '--status-port <port>', env: 'STACCATO_STATUS_PORT', kind: 'port', description: 'serve JSON status on 127.0.0.1:<port>/status (and /metrics); off when unset, 0 picks a port' },
  { key: 'metricsPort', flag: '--metrics-port <port>', env: 'STACCATO_METRICS_PORT', kind: 'port', description: 'serve Prometheus metrics on <metrics host>:<port>/metrics; off when unset' },
  { key: 'metricsHost', flag: '--metrics-host <host>', env: 'STACCATO_METRICS_HOST', kind: 'string', default: '127.0.0.1', description: 'address of the metrics listener' },
  { key: 'logLevel', flag: '--log-level <level>', env: 'STACCATO_LOG_LEVEL', kind: 'level', default: 'info', description: 'trace, debug, info, warn, error, fatal or silent' }
]

// How long written bytes may wait for a sync when --sync-every is not reached; a slow link then loses at most this much on a crash.
const SYNC_EVERY_MS = 1000

export async function agentConfig (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Promise<AgentConfig> {
  const file = await loadConfigFile((flags.config as string | undefined) ?? env.STACCATO_CONFIG, SECTIONS)
  const { values: v, origin } = resolveOptions('agent', AGENT_OPTIONS, flags, env, file)
  const name = v.name as string | undefined
  if (name === undefined) throw new ConfigError('agent: a name is required: --name, STACCATO_AGENT_NAME or agent.name in the config file')
  if (!isValidAgentName(name)) throw new ConfigError(`${origin.name} '${name}' must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`)
  const coordinator = v.coordinator as string | undefined
  if (coordinator === undefined) throw new ConfigError('agent: the coordinator\'s address is required: --coordinator, STACCATO_COORDINATOR or agent.coordinator in the config file')
  // A comma-separated list: coordinator replicas on one database.
  for (const one of coordinator.split(',')) checkCoordinator(origin.coordinator, one.trim())
  const volumes = v.volumes as Volume[]
  await checkVolumes(origin.volumes, volumes)
  if (v.registryMirror !== undefined && (v.mirrorImages as string[]).length === 0) throw new ConfigError(`${origin.registryMirror}: name the images it may serve with --mirror-image`)
  for (const image of v.mirrorImages as string[]) {
    if (!/^[^/\s]+\/[^\s]+$/.test(image)) throw new ConfigError(`${origin.mirrorImages}: '${image}' is not registry/repository or registry/prefix/*`)
  }
  const streams = v.streams as number
  if (streams < 1 || streams > MAX_STREAMS) throw new ConfigError(`${origin.streams} '${streams}' must be from 1 to ${MAX_STREAMS}`)
  const treeStreams = v.treeStreams as number
  if (treeStreams < 1 || treeStreams > MAX_STREAMS) throw new ConfigError(`${origin.treeStreams} '${treeStreams}' must be from 1 to ${MAX_STREAMS}`)
  const directIo = v.directIo as string
  if (directIo !== 'auto' && directIo !== 'off') throw new ConfigError(`${origin.directIo} '${directIo}' must be auto or off`)
  const labels: Record<string, string> = {}
  for (const text of v.labels as string[]) {
    const m = /^([A-Za-z0-9][A-Za-z0-9._/-]{0,62})=(.{0,256})$/.exec(text)
    if (m === null) throw new ConfigError(`${origin.labels}: '${text}' is not key=value (a key of letters, digits, '.', '_', '/' or '-')`)
    labels[m[1]] = m[2]
  }
  let allowAddresses
  try {
    allowAddresses = parseAddressAllow(v.allowAddresses as string[])
  } catch (err) {
    throw new ConfigError(`${origin.allowAddresses}: ${(err as Error).message}`)
  }
  return {
    name,
    coordinator,
    dataDir: (v.dataDir as string | undefined) ?? resolve('.staccato', 'agents', name),
    listen: v.listen as string[],
    dataListen: v.dataListen as string | undefined,
    volumes,
    plugins: v.plugins as string[],
    allowAddresses,
    registries: v.registriesFile !== undefined ? await loadRegistries(v.registriesFile as string) : {},
    joinToken: v.joinToken as string | undefined,
    registryMirror: v.registryMirror as string | undefined,
    mirrorImages: v.mirrorImages as string[],
    labels,
    maxUploadRate: v.maxUploadRate as number | undefined,
    maxDownloadRate: v.maxDownloadRate as number | undefined,
    syncEveryBytes: v.syncEvery as number,
    syncEveryMs: SYNC_EVERY_MS,
    streams,
    treeStreams,
    directIo,
    statusPort: v.statusPort as number | undefined,
    metricsPort: v.metricsPort as number | undefined,
    metricsHost: v.metricsHost as string,
    logLevel: v.logLevel as string
  }
}

function checkCoordinator (where: string, text: string): void {
  let hasPeer: boolean
  try {
    hasPeer = multiaddr(text).getComponents().some(c => c.name === 'p2p')
  } catch {
    throw new ConfigError(`${where} '${text}' is not a multiaddr, e.g. /ip4/10.0.0.5/tcp/7701/p2p/12D3KooW…`)
  }
  if (!hasPeer) throw new ConfigError(`${where} '${text}' must end in /p2p/<coordinator peer id> (printed by the coordinator at start-up)`)
}

async function checkVolumes (where: string, volumes: Volume[]): Promise<void> {
  const fromFile = where.startsWith('config: ')
  const seen = new Set<string>()
  for (const [i, vol] of volumes.entries()) {
    const name = fromFile ? `${where}[${i}]` : `${where} '${vol.name}=${vol.root}'`
    if (seen.has(vol.name)) throw new ConfigError(`${name}: volume '${vol.name}' is named twice`)
    seen.add(vol.name)
    let st
    try {
      st = await stat(vol.root)
    } catch (err) {
      // Not there is the usual mistake; anything else (no permission, a broken mount) is told as it is.
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read: ${(err as Error).message}`
      throw new ConfigError(`${fromFile ? `${name}.root` : name}: ${vol.root} ${why}`)
    }
    if (!st.isDirectory()) throw new ConfigError(`${fromFile ? `${name}.root` : name}: ${vol.root} is not a directory`)
  }
}
