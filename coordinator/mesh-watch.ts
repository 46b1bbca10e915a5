import { parseLocation } from '../mesh/index.ts'
import type { ControlParams } from '../mesh/index.ts'
import type { PartHandlers } from './registry.ts'
import { locationAgents } from './store-input.ts'
import type { TransferStore } from './store.ts'
import { seedAgent } from './distribution.ts'
import { SwarmViews } from './swarm-view.ts'
import { Throughput } from './throughput.ts'

/** Progress counters remembered to turn totals into deltas; one per running transfer or swarm destination. */
const MAX_COUNTERS = 65_536

/**
 * What the dashboard shows beyond the store: each swarm's piece map and who
 * served whom, and the throughput series. Fed by the casts the agents send
 * anyway (progress, swarm progress, swarm stats); kept in memory only.
 */
export class MeshWatch {
  readonly swarms = new SwarmViews()
  readonly throughput: Throughput
  private readonly store: TransferStore
  private readonly counters = new Map<string, number>()

  constructor (store: TransferStore, now?: () => number) {
    this.store = store
    this.throughput = new Throughput(now)
  }

  /**
   * The handlers of the agents' casts with the watch looking on: progress and
   * swarm progress are seen here before the store takes them (the watch counts
   * bytes since what the store held), and swarm stats are the watch's own.
   * Only the dashboard depends on the watch: its failure never keeps a cast
   * from dispatch.
   */
  observe<H extends Pick<PartHandlers, 'progress' | 'swarmProgress'>> (handlers: H, log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void): H & Pick<PartHandlers, 'swarmStats'> {
    const safely = (what: string, agent: string, fn: () => void): void => {
      try {
        fn()
      } catch (err) {
        log('could not count a cast for the dashboard', { agent, method: what, error: String(err) }, 'warn')
      }
    }
    return {
      ...handlers,
      progress: async (p, ctx) => {
        safely('progress', ctx.agent, () => { this.onProgress(ctx.agent, p) })
        await handlers.progress(p, ctx)
      },
      swarmProgress: async (p, ctx) => {
        safely('swarmProgress', ctx.agent, () => { this.onSwarmProgress(ctx.agent, p) })
        await handlers.swarmProgress(p, ctx)
      },
      swarmStats: async (s, ctx) => { safely('swarmStats', ctx.agent, () => { this.onSwarmStats(ctx.agent, s) }) }
    }
  }

  onProgress (agent: string, p: ControlParams<'progress'>): void {
    const rec = this.store.get(p.transferId)
    if (rec?.executor !== agent) return
    const bytes = this.delta(`${p.transferId}:${p.attempt}`, p.bytesDone, rec.attempt === p.attempt ? rec.progress.bytesDone : 0)
    const { sender, receiver } = ends(rec.source, rec.destination, agent)
    if (sender !== undefined) this.throughput.add(sender, 'tx', bytes)
    if (receiver !== undefined) this.throughput.add(receiver, 'rx', bytes)
  }

  onSwarmProgress (agent: string, p: ControlParams<'swarmProgress'>): void {
    const rec = this.store.get(p.distributionId)
    const dest = rec?.destinations?.find(d => d.agent === agent && d.destination === p.destination)
    if (dest === undefined) return
    this.throughput.add(agent, 'rx', this.delta(`${p.distributionId}:${agent}`, p.bytesDone, dest.bytesDone))
  }

  onSwarmStats (agent: string, s: ControlParams<'swarmStats'>): void {
    const rec = this.store.get(s.distributionId)
    // Only a participant speaks for itself in a swarm: another agent's stats would draw pieces that are not there.
    if (rec?.destinations === undefined || (seedAgent(rec) !== agent && !rec.destinations.some(d => d.agent === agent))) return
    this.throughput.add(agent, 'tx', this.swarms.onStats(agent, s, this.peerNames(s)))
  }

  /** Bytes since the last total seen for `key`; the first time, since `baseline` (what the store had), so a resumed transfer is no burst. */
  private delta (key: string, total: number, baseline: number): number {
    const prev = this.counters.get(key) ?? baseline
    this.counters.delete(key)
    if (this.counters.size >= MAX_COUNTERS) this.counters.delete(this.counters.keys().next().value as string)
    this.counters.set(key, total)
    return Math.max(0, total - prev)
  }

  /** Agent names by peer id, looked up once per message (only when it names peers). */
  private peerNames (s: ControlParams<'swarmStats'>): (peerId: string) => string | undefined {
    if (s.served.length === 0) return () => undefined
    const names = new Map(this.store.listAgents().map(a => [a.peerId, a.name]))
    return peerId => names.get(peerId)
  }
}

/**
 * Which agents a copy's bytes leave and reach: the agents its locations name
 * (agent://, or a plug-in location's `via`); for a plug-in location without
 * one, the agent running the copy, which reads or writes it itself.
 */
function ends (source: string, destination: string, executor: string): { sender?: string, receiver?: string } {
  const src = locationAgents(parseLocation(source, 'source'))[0]
  const dst = locationAgents(parseLocation(destination, 'destination'))[0]
  return {
    sender: src ?? (dst === undefined ? executor : undefined),
    receiver: dst ?? (src === undefined ? executor : undefined)
  }
}
