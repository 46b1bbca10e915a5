import { setTimeout as sleep } from 'node:timers/promises'
import { InvalidArgumentError, toStaccatoError } from '../mesh/index.ts'
import type { TransferStore } from './store.ts'
import { TERMINAL_STATES } from './model.ts'
import type { TransferRecord, TransferState } from './model.ts'
import { isImageDistribution } from './distribution.ts'
import { preheatInput } from './preheat.ts'
import { ImageHolders } from './image-seed.ts'
import type { PartHandlers } from './registry.ts'

/**
 * How long the first want of an image waits for others: the hosts of one
 * rollout start their pulls within a fraction of a second of each other,
 * and half a second is little next to the pull of an image worth sharing.
 */
const WINDOW_MS = 500
/** States of a distribution an agent can still join. */
const UNFINISHED = ['active', 'scheduled', 'queued'] as const
/** The newest distributions of an agent looked at per state: a host is in few at once. */
const EXISTING_SCANNED = 50

/**
 * Whether `rec` brings the image `want` (oci://registry/repository@sha256:<manifest>) to `agent`:
 * an image distribution with the agent among its destinations, of that manifest, or, before its
 * seed has made the manifest, of that registry and repository (most likely the same image; if
 * not, the mirror falls back to the registry once the distribution ends without the blob). Pure.
 */
export function bringsImage (rec: Pick<TransferRecord, 'source' | 'destinations' | 'manifest' | 'state'>, agent: string, want: string): boolean {
  if (rec.destinations === undefined || !isImageDistribution(rec)) return false
  const mine = rec.destinations.find(d => d.agent === agent)
  if (mine === undefined || TERMINAL_STATES.has(mine.state as TransferState)) return false
  const at = want.lastIndexOf('@')
  if (rec.manifest?.image !== undefined) return rec.manifest.image.digest === want.slice(at + 1)
  const source = new URL(rec.source)
  const repository = source.pathname.replace(/^\/+/, '').replace(/[:@].*$/, '')
  return want.slice(0, at) === `oci://${source.host}/${repository}`
}

/** The tenant of distributions the mirrors ask for: they are the mesh's own, not a client's. */
const MIRROR_TENANT = 'default'

export interface ImageWantsOptions {
  store: TransferStore
  isOnline: (agent: string) => boolean
  log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void
  /** Who seeded each image last (it keeps every blob it seeded in its store), shared with the API's seed choice. */
  holders?: ImageHolders
}

/**
 * Cold pulls through the agents' registry mirrors, shared: the wants of one
 * image that arrive within a short window become one image distribution
 * (the registry read once, by its seed), seeded by the agent that seeded
 * that image last when it is online (it holds every blob), or else by the
 * first agent that asked. An agent already in a running distribution of the
 * image is told that one.
 */
export class ImageWants {
  private readonly opts: ImageWantsOptions
  private readonly pending = new Map<string, { agents: Set<string>, done: Promise<string | undefined> }>()
  private readonly running = new Map<string, { id: string, agents: Set<string> }>()
  private readonly holders: ImageHolders
  readonly handlers: Pick<PartHandlers, 'imageWant'> = {
    imageWant: async (p, { agent }) => await this.want(agent, p.image)
  }

  constructor (opts: ImageWantsOptions) {
    this.opts = opts
    this.holders = opts.holders ?? new ImageHolders()
  }

  async want (agent: string, image: string): Promise<{ distributionId?: string, self?: boolean }> {
    // Already bringing this image here (a preheat, a distribution a client submitted): its blobs are served as they land.
    const existing = this.existingFor(agent, image)
    if (existing !== undefined) return { distributionId: existing }
    const run = this.running.get(image)
    if (run !== undefined) {
      const rec = this.opts.store.get(run.id)
      if (rec !== undefined && !TERMINAL_STATES.has(rec.state) && run.agents.has(agent)) return { distributionId: run.id }
      if (rec === undefined || TERMINAL_STATES.has(rec.state)) this.running.delete(image)
    }
    let p = this.pending.get(image)
    if (p === undefined) {
      const agents = new Set<string>()
      const done = sleep(WINDOW_MS).then(async () => {
        this.pending.delete(image)
        return await this.start(image, [...agents])
      })
      p = { agents, done }
      this.pending.set(image, p)
    }
    p.agents.add(agent)
    const id = await p.done
    return id !== undefined && this.running.get(image)?.agents.has(agent) === true ? { distributionId: id } : { self: true }
  }

  /** A distribution not yet ended that brings `image` to `agent` as a destination, whoever made it. */
  private existingFor (agent: string, image: string): string | undefined {
    for (const state of UNFINISHED) {
      const page = this.opts.store.list({ agent, state, limit: EXISTING_SCANNED, order: 'desc' })
      const found = page.items.find(rec => bringsImage(rec, agent, image))
      if (found !== undefined) return found.id
    }
    return undefined
  }

  /** One distribution for the agents that asked; undefined when there is none to make (a lone asker reads the registry itself). */
  private async start (image: string, agents: string[]): Promise<string | undefined> {
    const holder = this.holders.get(image)
    const via = holder !== undefined && this.opts.isOnline(holder) ? holder : agents[0]
    let input
    try {
      input = preheatInput({ image, agents, via, labels: { 'staccato.mirror': 'true' } }, name => this.opts.store.getAgent(name))
    } catch (err) {
      if (err instanceof InvalidArgumentError) return undefined
      throw err
    }
    try {
      const { record } = await this.opts.store.create(input, { tenant: MIRROR_TENANT })
      // The seed too: its blob store receives every blob while it makes the manifest.
      this.running.set(image, { id: record.id, agents: new Set([...agents, via]) })
      this.holders.note(image, via)
      this.opts.log('image distribution for mirrors', { transferId: record.id, image, seed: via, agents })
      return record.id
    } catch (err) {
      this.opts.log('could not start an image distribution for mirrors', { image, error: toStaccatoError(err).message }, 'warn')
      return undefined
    }
  }
}
