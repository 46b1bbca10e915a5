import { InvalidArgumentError } from '../../mesh/index.ts'
import type { Location } from '../../mesh/index.ts'
import type { AgentRecord } from '../model.ts'
import type { TransferStore } from '../store.ts'

/** Names listed in a refusal, at most: enough to spot a typo, never a wall of text. */
const SHOWN = 20

/**
 * Checks against what the agents told the coordinator when they registered
 * (kept in their records while they are offline too), so that a volume or a
 * scheme that does not exist is refused now with a 400, not minutes later
 * when the agent first looks.
 */
export function checkVolume (agent: AgentRecord, loc: Location, field: string): void {
  if (loc.kind !== 'agent') return
  if (agent.volumes.some(v => v.name === loc.volume)) return
  throw new InvalidArgumentError(`${field}: agent '${agent.name}' has no volume '${loc.volume}' (it has: ${listed(agent.volumes.map(v => `${v.name}${v.readOnly ? ' (read-only)' : ''}`))})`)
}

/**
 * The agent that runs a transfer opens its plug-in locations; the
 * coordinator picks it as the scheduler's default executor does (the
 * destination's agent or via, else the source's).
 */
export function runningAgent (source: Location, destination: Location): string | undefined {
  if (destination.kind === 'agent') return destination.agent
  if (destination.via !== undefined) return destination.via
  if (source.kind === 'agent') return source.agent
  return source.via
}

/** A plug-in location's scheme must be one its agent serves (or, with no agent known yet, one some agent serves). */
export function checkScheme (store: TransferStore, loc: Location, field: string, agent: string | undefined): void {
  if (loc.kind !== 'plugin') return
  const runner = agent !== undefined ? store.getAgent(agent) : undefined
  const all = runner === undefined ? store.listAgents() : []
  // No agent registered yet: nothing to compare with, and such a transfer waits in the queue as it always has.
  if (runner === undefined && all.length === 0) return
  const served = runner !== undefined ? runner.plugins : [...new Set(all.flatMap(a => a.plugins))]
  const schemes = served.filter(s => s !== 'agent')
  if (schemes.includes(loc.scheme)) return
  const who = runner !== undefined ? `agent '${runner.name}', which runs this transfer, serves` : 'no agent serves'
  const near = closest(loc.scheme, schemes)
  const hint = near !== undefined ? `; did you mean '${near}'?` : ''
  const what = runner !== undefined ? `no '${loc.scheme}' scheme (it serves: ${listed(schemes)})` : `'${loc.scheme}' (served: ${listed(schemes)})`
  throw new InvalidArgumentError(`${field}: ${who} ${what}${hint}`)
}

function listed (names: string[]): string {
  if (names.length === 0) return 'none'
  const shown = names.slice(0, SHOWN).join(', ')
  return names.length > SHOWN ? `${shown} and ${names.length - SHOWN} more` : shown
}

/** The nearest name within two edits, for a typo's suggestion. */
function closest (word: string, names: string[]): string | undefined {
  let best: string | undefined
  let bestDistance = 3
  for (const name of names) {
    const d = distance(word, name)
    if (d < bestDistance) { best = name; bestDistance = d }
  }
  return best
}

/** Levenshtein distance; schemes are short (the location parser caps a URL at 4096 characters). */
function distance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]
}
