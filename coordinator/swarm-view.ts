import type { ControlParams } from '../mesh/index.ts'

/** What the coordinator last heard from one participant of a distribution. */
export interface ParticipantStats {
  /** Base64 bitfield of the pieces it holds (destinations only; the seed holds them all). */
  have?: string
  /** Bytes served to each other participant, by agent name (a peer id when the agent is not known). */
  served: Map<string, number>
  at: number
}

/**
 * The swarm view behind GET /v1/transfers/:id/swarm: the latest stats each
 * participant sent, for the most recent distributions only. Bounded: at most
 * `maxDistributions` are kept (the least recently updated goes first), each
 * with at most its participants × the 64 peers a stats message names.
 */
export class SwarmViews {
  private readonly views = new Map<string, Map<string, ParticipantStats>>()
  private readonly maxDistributions: number

  constructor (maxDistributions = DEFAULT_MAX_DISTRIBUTIONS) {
    this.maxDistributions = maxDistributions
  }

  /** Records one participant's stats; answers the bytes it served since its previous stats (for the throughput series). */
  onStats (agent: string, s: ControlParams<'swarmStats'>, nameOf: (peerId: string) => string | undefined, now = Date.now()): number {
    let view = this.views.get(s.distributionId)
    if (view === undefined) {
      view = new Map()
      if (this.views.size >= this.maxDistributions) this.views.delete(this.views.keys().next().value as string)
    } else {
      this.views.delete(s.distributionId)
    }
    // Re-inserted: the map's order is the order of the last update.
    this.views.set(s.distributionId, view)
    const before = view.get(agent)
    const served = new Map(s.served.map(e => [nameOf(e.peerId) ?? e.peerId, e.bytes]))
    let sent = 0
    for (const [peer, bytes] of served) {
      // A restarted agent counts from zero again: its new total is all new.
      const prev = before?.served.get(peer) ?? 0
      sent += bytes >= prev ? bytes - prev : bytes
    }
    view.set(agent, { have: s.have ?? before?.have, served, at: now })
    return sent
  }

  get (distributionId: string): ReadonlyMap<string, ParticipantStats> | undefined {
    return this.views.get(distributionId)
  }

  get size (): number { return this.views.size }
}

/** Distributions whose swarm is kept; a dashboard looks at the running ones, and few run at once. */
const DEFAULT_MAX_DISTRIBUTIONS = 256
