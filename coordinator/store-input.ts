import { CHECKSUM_MODES, InvalidArgumentError, MAX_STREAMS, OVERWRITE_MODES, SYNC_MODES, namesDirectory, parseLocation } from '../mesh/index.ts'
import type { ChecksumMode, Location, Overwrite, TreeOptions } from '../mesh/index.ts'
import type { TransferInput, TransferRecord } from './model.ts'

/** Limits shared by the store (which enforces them for every caller) and the API schemas (which document them). */
export const LIMITS = {
  priority: { min: -1000, max: 1000 },
  retries: { min: 0, max: 100, default: 3 },
  locationLength: 4096,
  labels: 32,
  labelKeyPattern: '^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$',
  labelValueLength: 256,
  idempotencyKeyLength: 128,
  callbackUrlLength: 2048
} as const

const LABEL_KEY = new RegExp(LIMITS.labelKeyPattern)
const SHA256_HEX = /^[0-9a-f]{64}$/

/** A request checked and normalized: the fields of the record it becomes, and a distribution's destinations. */
export type PreparedInput = Pick<TransferRecord, 'source' | 'destination' | 'checksum' | 'checksumMode' | 'overwrite' | 'streams' | 'tree' | 'priority' | 'retries' | 'labels' | 'agents' | 'callbackUrl'> & {
  /** Set for a distribution. */
  destinations?: string[]
}

/** The agents a location involves: the agent of an agent:// URL, or the `via` of a plug-in URL. */
export function locationAgents (loc: Location): string[] {
  if (loc.kind === 'agent') return [loc.agent]
  return loc.via !== undefined ? [loc.via] : []
}

/** Destinations of one distribution at most; each runs a swarm session with its own journal. */
export const MAX_DESTINATIONS = 256

/**
 * The source and the destination(s): `destination` for one copy, or
 * `destinations` (agent:// locations, at least two) for a distribution.
 * `destination` is then the first of them.
 */
export function parseEndpoints (input: { source: string, destination?: string, destinations?: string[] }): { source: Location, destination: Location, destinations?: Location[] } {
  const source = parseLocation(input.source, 'source')
  if ((input.destination === undefined) === (input.destinations === undefined)) {
    throw new InvalidArgumentError('destination: give either destination (one copy) or destinations (a distribution to several agents)')
  }
  if (input.destinations !== undefined) {
    const list = input.destinations
    if (!Array.isArray(list) || list.length < 1 || list.length > MAX_DESTINATIONS) throw new InvalidArgumentError(`destinations: must list 1 to ${MAX_DESTINATIONS} locations`)
    const destinations = list.map((text, i) => {
      if (typeof text !== 'string' || text.length > LIMITS.locationLength) throw new InvalidArgumentError(`destinations[${i}]: must be a location of at most ${LIMITS.locationLength} characters`)
      const loc = parseLocation(text, `destinations[${i}]`)
      if (loc.kind !== 'agent') throw new InvalidArgumentError(`destinations[${i}]: a distribution delivers to agent volumes (agent://name/volume/path), not ${loc.url.protocol}`)
      if (loc.url.href === source.url.href) throw new InvalidArgumentError(`destinations[${i}]: must differ from source`)
      return loc
    })
    const agents = destinations.map(d => d.kind === 'agent' ? d.agent : '')
    const dup = agents.find((a, i) => agents.indexOf(a) !== i)
    if (dup !== undefined) throw new InvalidArgumentError(`destinations: agent '${dup}' appears twice; a distribution sends one copy to each agent`)
    const seeds = locationAgents(source)
    if (seeds.length === 0) throw new InvalidArgumentError('source: a distribution needs a source on an agent (agent://… or ?via=agent)')
    // The seed runs one swarm session per distribution: as a destination too it would wait for pieces from itself forever.
    const self = agents.indexOf(seeds[0])
    if (self !== -1) throw new InvalidArgumentError(`destinations[${self}]: agent '${seeds[0]}' is the source's agent; it already has the file (copy it there with a plain transfer)`)
    return { source, destination: destinations[0], destinations }
  }
  const destination = parseLocation(input.destination as string, 'destination')
  if (source.url.href === destination.url.href) {
    throw new InvalidArgumentError('destination: must differ from source')
  }
  return { source, destination }
}

/** Validates an input and fills its defaults; throws InvalidArgumentError naming the field. */
export function prepareInput (input: TransferInput): PreparedInput {
  for (const field of ['source', 'destination'] as const) {
    const value: unknown = input[field]
    if (field === 'destination' && value === undefined && input.destinations !== undefined) continue
    if (typeof value !== 'string') throw new InvalidArgumentError(`${field}: must be a string`)
    if (value.length > LIMITS.locationLength) throw new InvalidArgumentError(`${field}: longer than ${LIMITS.locationLength} characters`)
  }
  const { source, destination, destinations } = parseEndpoints(input)
  const priority = input.priority ?? 0
  if (!Number.isInteger(priority) || priority < LIMITS.priority.min || priority > LIMITS.priority.max) {
    throw new InvalidArgumentError(`priority: must be an integer from ${LIMITS.priority.min} to ${LIMITS.priority.max}`)
  }
  const retries = input.retries ?? LIMITS.retries.default
  if (!Number.isInteger(retries) || retries < LIMITS.retries.min || retries > LIMITS.retries.max) {
    throw new InvalidArgumentError(`retries: must be an integer from ${LIMITS.retries.min} to ${LIMITS.retries.max}`)
  }
  const prepared: PreparedInput = {
    source: input.source,
    destination: input.destinations?.[0] ?? input.destination as string,
    priority,
    retries,
    labels: prepareLabels(input.labels),
    agents: [...new Set([...locationAgents(source), ...(destinations ?? [destination]).flatMap(locationAgents)])]
  }
  if (destinations !== undefined) prepared.destinations = input.destinations
  if (input.checksum !== undefined) prepared.checksum = prepareChecksum(input.checksum)
  if (input.checksumMode !== undefined) prepared.checksumMode = prepareChecksumMode(input.checksumMode, prepared)
  if (input.overwrite !== undefined) prepared.overwrite = prepareOverwrite(input.overwrite, prepared)
  if (input.streams !== undefined) prepared.streams = prepareStreams(input.streams, prepared)
  const tree = prepareTree(input, source, destination, destinations)
  if (tree !== undefined) prepared.tree = tree
  // The tree executor never reads it: several streams asked for would be accepted and silently not given.
  if (tree !== undefined && prepared.streams !== undefined && prepared.streams !== 1) throw new InvalidArgumentError('streams: a tree carries its files in batches of its own; streams applies to a single file only')
  if (input.callbackUrl !== undefined) prepared.callbackUrl = prepareCallbackUrl(input.callbackUrl)
  return prepared
}

function prepareChecksum (checksum: { algorithm: string, value: string }): { algorithm: 'sha256', value: string } {
  if (checksum.algorithm !== 'sha256') throw new InvalidArgumentError('checksum.algorithm: must be sha256')
  const value = typeof checksum.value === 'string' ? checksum.value.toLowerCase() : ''
  if (!SHA256_HEX.test(value)) throw new InvalidArgumentError('checksum.value: must be 64 hex digits')
  return { algorithm: 'sha256', value }
}

function prepareChecksumMode (mode: unknown, prepared: PreparedInput): ChecksumMode {
  const known = CHECKSUM_MODES.find(m => m === mode)
  if (known === undefined) throw new InvalidArgumentError(`checksumMode: must be one of ${CHECKSUM_MODES.join(', ')}`)
  if (known !== 'sha256' && prepared.checksum !== undefined) throw new InvalidArgumentError(`checksumMode: a pinned checksum is a sha256, so it needs checksumMode sha256, not ${known}`)
  // Swarm pieces are checked against their sha256 from a manifest: a distribution has no other mode.
  if (known !== 'sha256' && prepared.destinations !== undefined) throw new InvalidArgumentError(`checksumMode: a distribution verifies every piece's sha256; ${known} applies to one destination only`)
  return known
}

function prepareStreams (streams: unknown, prepared: PreparedInput): number {
  if (typeof streams !== 'number' || !Number.isInteger(streams) || streams < 1 || streams > MAX_STREAMS) {
    throw new InvalidArgumentError(`streams: must be an integer from 1 to ${MAX_STREAMS}`)
  }
  // A distribution's pieces already travel on many streams from many peers.
  if (prepared.destinations !== undefined && streams !== 1) throw new InvalidArgumentError('streams: a distribution fetches pieces from every peer at once; streams applies to one destination only')
  return streams
}

/** Globs per list at most, and characters per glob (the API schema documents the same). */
const GLOBS = { items: 64, length: 1024 }

/**
 * A tree to several agents goes through the swarm as one distribution
 * (agent/swarm/tree-seed.ts, tree-writer.ts): every destination a directory, the tree sent whole
 * (selected by the globs). The sync levels, mirror and dry run compare with
 * what one destination holds, which a swarm session does not do.
 */
function prepareTreeDistribution (input: TransferInput, source: Location, destinations: Location[] = []): TreeOptions {
  if (source.kind !== 'agent') throw new InvalidArgumentError('source: a tree is sent from an agent volume (agent://name/volume/dir/)')
  destinations.forEach((d, i) => {
    if (!namesDirectory(d)) throw new InvalidArgumentError(`destinations[${i}]: the source is a directory (it ends with /), so each destination must be one too: ${input.destinations?.[i] ?? ''}/`)
  })
  if (input.links === 'copy') throw new InvalidArgumentError('links: copy applies to a tree sent to one destination; a tree sent to several goes through the swarm, which skips symbolic links')
  if (input.links !== undefined && input.links !== 'skip') throw new InvalidArgumentError('links: must be skip or copy')
  for (const field of ['sync', 'deleteExtra', 'dryRun'] as const) {
    if (input[field] !== undefined) throw new InvalidArgumentError(`${field}: applies to a tree sent to one destination; a tree sent to several goes through the swarm whole (files already in place with the same size, mtime and sha256 are not fetched again)`)
  }
  return globsOf(input, {})
}

function globsOf (input: TransferInput, tree: TreeOptions): TreeOptions {
  for (const field of ['include', 'exclude'] as const) {
    const list = input[field]
    if (list === undefined) continue
    if (!Array.isArray(list) || list.length > GLOBS.items || list.some(g => typeof g !== 'string' || g === '' || g.length > GLOBS.length)) {
      throw new InvalidArgumentError(`${field}: at most ${GLOBS.items} globs of 1 to ${GLOBS.length} characters`)
    }
    tree[field] = list
  }
  return tree
}

/**
 * A source ending in / is a tree: it goes into a directory (a destination
 * ending in /), from one agent's volume to another's. Its sync level and
 * globs mean nothing for a single file, so they are refused there.
 */
function prepareTree (input: TransferInput, source: Location, destination: Location, destinations?: Location[]): TreeOptions | undefined {
  const isTree = namesDirectory(source)
  if (!isTree) {
    for (const field of ['sync', 'include', 'exclude', 'deleteExtra', 'dryRun', 'links'] as const) {
      if (input[field] !== undefined) throw new InvalidArgumentError(`${field}: applies to a tree; name the source directory with a trailing / (${input.source}/)`)
    }
    return undefined
  }
  if (input.destinations !== undefined) return prepareTreeDistribution(input, source, destinations)
  if (!namesDirectory(destination)) throw new InvalidArgumentError(`destination: the source is a directory (it ends with /), so the destination must be one too: ${input.destination ?? ''}/`)
  if (source.kind !== 'agent' || destination.kind !== 'agent') throw new InvalidArgumentError('source: a tree is copied between agent volumes (agent://name/volume/dir/)')
  if (source.agent === destination.agent && source.volume === destination.volume) {
    // One inside the other: the copy would list itself as it grows, and a mirror would remove the source.
    const inside = (a: string, b: string): boolean => a === b || a.startsWith(b === '' ? '' : `${b}/`)
    const [s, d] = [source.path.replace(/\/$/, ''), destination.path.replace(/\/$/, '')]
    if (inside(s, d) || inside(d, s)) throw new InvalidArgumentError(`destination: ${input.destination ?? ''} and the source ${input.source} are the same directory or one holds the other; copy a tree into a directory outside it`)
  }
  const tree: TreeOptions = {}
  if (input.sync !== undefined) {
    const known = SYNC_MODES.find(m => m === input.sync)
    if (known === undefined) throw new InvalidArgumentError(`sync: must be one of ${SYNC_MODES.join(', ')}`)
    tree.sync = known
  }
  if (input.overwrite === 'never') {
    // A tree's sync level decides which files are replaced; never replacing any is sync exists (rsync's --ignore-existing).
    if (tree.sync !== undefined && tree.sync !== 'exists') throw new InvalidArgumentError(`overwrite: never keeps every file already at the destination, so sync ${tree.sync} could replace none; leave sync out (or give sync: exists)`)
    tree.sync = 'exists'
  }
  globsOf(input, tree)
  if (input.links !== undefined) {
    if (input.links !== 'skip' && input.links !== 'copy') throw new InvalidArgumentError('links: must be skip (list every symbolic link as skipped; the default) or copy (make the links whose target stays inside the tree)')
    if (input.links === 'copy') tree.links = 'copy'
  }
  for (const field of ['deleteExtra', 'dryRun'] as const) {
    const flag = input[field]
    if (flag === undefined) continue
    if (typeof flag !== 'boolean') throw new InvalidArgumentError(`${field}: must be true or false`)
    if (flag) tree[field] = true
  }
  return tree
}

function prepareOverwrite (mode: unknown, prepared: PreparedInput): Overwrite {
  const known = OVERWRITE_MODES.find(m => m === mode)
  if (known === undefined) throw new InvalidArgumentError(`overwrite: must be one of ${OVERWRITE_MODES.join(', ')}`)
  // A distribution's destinations are checked by its swarm sessions, which do not look at what is there yet.
  if (known !== 'always' && prepared.destinations !== undefined) throw new InvalidArgumentError(`overwrite: ${known} applies to one destination only; a distribution replaces what its destinations hold`)
  return known
}

/** Only the form is checked here; the address is checked where it is dialled (coordinator/events). */
function prepareCallbackUrl (text: unknown): string {
  if (typeof text !== 'string' || text.length > LIMITS.callbackUrlLength) {
    throw new InvalidArgumentError(`callbackUrl: must be a string of at most ${LIMITS.callbackUrlLength} characters`)
  }
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new InvalidArgumentError('callbackUrl: not a URL')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError('callbackUrl: must be an http or https URL')
  if (url.username !== '' || url.password !== '') throw new InvalidArgumentError('callbackUrl: must not carry credentials')
  return url.href
}

function prepareLabels (labels: Record<string, string> | undefined): Record<string, string> {
  if (labels === undefined) return {}
  const entries = Object.entries(labels)
  if (entries.length > LIMITS.labels) throw new InvalidArgumentError(`labels: at most ${LIMITS.labels} labels`)
  for (const [key, value] of entries) {
    if (!LABEL_KEY.test(key)) throw new InvalidArgumentError(`labels: '${key}' is not a valid label key`)
    if (typeof value !== 'string' || value.length > LIMITS.labelValueLength) {
      throw new InvalidArgumentError(`labels.${key}: must be a string of at most ${LIMITS.labelValueLength} characters`)
    }
  }
  return Object.fromEntries(entries)
}
