import { InvalidArgumentError } from '../mesh/index.ts'
import type { AgentRecord, TransferInput } from './model.ts'

/**
 * The image an oci:// source names, whatever agent reads it: the key under
 * which the coordinator remembers who seeded it last.
 */
export function imageKey (source: string): string {
  const url = new URL(source)
  url.searchParams.delete('via')
  return url.toString()
}

/**
 * The seed of an image distribution whose source names no `via`: the agent
 * that seeded this image last when it is online (its blob store holds every
 * blob, so the registry is not read again), else any online agent with the
 * oci plug-in that is not a destination (a distribution's seed is never one
 * of its destinations). Agents do not say which registries they may reach,
 * so the choice among them is by name, for a stable answer. Pure.
 */
export function chooseImageSeed (agents: ReadonlyArray<Pick<AgentRecord, 'name' | 'online' | 'plugins'>>, destinations: readonly string[], holder?: string): string {
  const eligible = agents.filter(a => a.online && a.plugins.includes('oci') && !destinations.includes(a.name))
  if (holder !== undefined && eligible.some(a => a.name === holder)) return holder
  const any = eligible.map(a => a.name).sort()[0]
  if (any === undefined) throw new InvalidArgumentError('source: no online agent you may use, outside the destinations, can read the registry (oci plug-in); name one with ?via=')
  return any
}

/** Agents that seeded an image last, by imageKey(); bounded, the oldest forgotten first. */
export class ImageHolders {
  private readonly kept = new Map<string, string>()
  private readonly max: number
  constructor (max = 1024) {
    this.max = max
  }

  get (source: string): string | undefined {
    return this.kept.get(imageKey(source))
  }

  note (source: string, agent: string): void {
    const key = imageKey(source)
    this.kept.delete(key)
    this.kept.set(key, agent)
    for (const old of this.kept.keys()) {
      if (this.kept.size <= this.max) break
      this.kept.delete(old)
    }
  }
}

/**
 * An image distribution submitted without ?via= gets its seed here, named
 * in the source (so the record says which agent read the registry); any
 * other input is returned as it is. `agents` are those the requester may
 * use (its tenant's allow-list): the seed, and the holder reused, are
 * chosen among them only.
 */
export function withImageSeed<T extends Pick<TransferInput, 'source' | 'destinations'>> (input: T, agents: ReadonlyArray<Pick<AgentRecord, 'name' | 'online' | 'plugins'>>, holders?: ImageHolders): T {
  const destinations = input.destinations
  if (destinations === undefined || !input.source.startsWith('oci://') || !destinations.every(d => d.endsWith('/'))) return input
  let url: URL
  try {
    url = new URL(input.source)
  } catch {
    return input
  }
  if (url.searchParams.has('via')) return input
  const names = destinations.map(d => URL.canParse(d) ? new URL(d).host : '')
  url.searchParams.set('via', chooseImageSeed(agents, names, holders?.get(input.source)))
  return { ...input, source: url.toString() }
}
