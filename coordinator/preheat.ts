import { InvalidArgumentError } from '../mesh/index.ts'
import type { AgentRecord, TransferInput } from './model.ts'

export interface PreheatRequest {
  /** oci://registry/repository:tag or …@sha256:… (with ?platform= if wanted). */
  image: string
  agents: string[]
  /** The agent that reads the registry (the distribution's seed); the first of `agents` when absent. */
  via?: string
  /** The volume each agent keeps the image in; each agent's first writable volume when absent. */
  volume?: string
  labels?: Record<string, string>
}

/**
 * The agents whose labels hold every pair of `selector` (preheat by labels),
 * by name; an empty selector selects none rather than every agent. Pure.
 */
export function agentsLabelled (agents: ReadonlyArray<Pick<AgentRecord, 'name' | 'labels'>>, selector: Record<string, string>): string[] {
  const pairs = Object.entries(selector)
  if (pairs.length === 0) throw new InvalidArgumentError('labels: give at least one key=value to select agents by')
  return agents.filter(a => pairs.every(([k, v]) => a.labels !== undefined && Object.hasOwn(a.labels, k) && a.labels[k] === v)).map(a => a.name).sort()
}

/**
 * Preheat as a distribution: the image goes into an OCI layout on each
 * agent (`<volume>/preheat/<registry>/<repository>/`), which puts every blob
 * in that agent's blob index, so its registry mirror serves the first pull
 * locally; the seed (`via`) holds every blob in its blob store. Pure: the
 * agents' records are passed in.
 */
export function preheatInput (req: PreheatRequest, agentOf: (name: string) => Pick<AgentRecord, 'volumes'> | undefined): TransferInput {
  let url: URL
  try {
    url = new URL(req.image)
  } catch {
    throw new InvalidArgumentError(`image: '${req.image}' is not an oci:// URL`)
  }
  if (url.protocol !== 'oci:') throw new InvalidArgumentError(`image: '${req.image}' is not an oci:// URL`)
  if (req.agents.length === 0) throw new InvalidArgumentError('agents: name at least one agent to preheat')
  const via = req.via ?? req.agents[0]
  url.searchParams.set('via', via)
  // The repository without its tag or digest; the registry's port colon is not welcome in a path on every file system.
  const repository = url.pathname.replace(/^\/+/, '').replace(/[:@].*$/, '')
  const dir = `preheat/${url.host.replace(/:/g, '_')}/${repository}/`
  // The seed is preheated by seeding: it keeps every blob it read in its blob store (a distribution never has its seed as a destination).
  const others = [...new Set(req.agents)].filter(a => a !== via)
  if (others.length === 0) throw new InvalidArgumentError(`agents: '${via}' reads the registry itself as the seed; name another agent to preheat, or another via`)
  const destinations = others.map(agent => {
    const volume = req.volume ?? agentOf(agent)?.volumes.find(v => !v.readOnly)?.name
    if (volume === undefined) throw new InvalidArgumentError(`agents: '${agent}' has no writable volume to keep the image in (name one with volume)`)
    return `agent://${agent}/${volume}/${dir}`
  })
  return { source: url.toString(), destinations, labels: { ...req.labels, 'staccato.preheat': 'true' } }
}
