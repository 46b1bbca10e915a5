/**
 * Peers named to each participant. bench:swarm-sim (N = 1,000, uniform caps):
 * with 4 the overlay falls apart (destinations never finish, the seed sends
 * pieces twice), with 8 p99 is 1.66 × the bound and the slowest 2.2 ×, with 16
 * 1.58 × and 1.59 ×. A swarm of up to 16 hosts is a full mesh, as before.
 */
export const PEERS_PER_PARTICIPANT = 16
/** Destinations given the seed, by default: about two peer sets' worth (bench:swarm-sim, 32 against 8 and 64). */
export const SEED_FANOUT = 32

/**
 * Who may be named as a peer: the seed, the destinations still fetching, and
 * those that finished, which serve their pieces until the whole distribution
 * ends; not those that failed or were canceled (sent away). Naming only those
 * still fetching gave a destination restarted late in a distribution the seed
 * alone — every other one had finished — so it fetched everything from the
 * seed (tree-swarm e2e: the seed uploaded 1.7 × the tree).
 */
export function servingParticipants (seed: string | undefined, destinations: ReadonlyArray<{ agent: string, state: string }>): string[] {
  const serving = destinations.filter(d => d.state !== 'failed' && d.state !== 'canceled').map(d => d.agent)
  return [...new Set([...(seed !== undefined ? [seed] : []), ...serving])]
}

/** What the tracker knows when it names a participant's peers. */
export interface PeerSetInput {
  /** The seed's name; ignored unless it is among `others` (the seed asking for its own peers leaves it out). */
  seed?: string
  /** The other participants online, seed included, in any order. */
  others: readonly string[]
  /** Named first when online (a participant that just came back, to be told about). */
  prefer?: readonly string[]
  /**
   * The peers this participant was named last time, when the tracker remembers
   * them. Those still online are named again (after `prefer`) and the seed is not
   * drawn anew: a participant re-joined to be told of a newcomer then gains one
   * link, not a fresh random set. Drawing afresh on every such re-join grew each
   * host's links from 16 to 39 and the seed's from 33 to 91 in bench:swarm-sim's
   * churn scenario (N = 1,000), and deeper serve queues made p99 2.54 × the bound
   * instead of 1.65 ×. Only places left by peers gone offline are drawn again.
   */
  previous?: readonly string[]
  /** How many peers to name. */
  size: number
  /** About how many destinations are given the seed: it bounds the seed's links (and requests) as the swarm grows. */
  seedFanout: number
  /** Uniform in [0, 1): injected so that a simulation replays the same choices. */
  random: () => number
}

/**
 * The tracker's peer-set selection (Kraken hands out a bounded random subset):
 * a bounded random sample of the other participants, so that no peer list, and
 * no participant's number of links, grows with the swarm. Small swarms (up to
 * `seedFanout` destinations) give every destination the seed; larger ones give
 * it to each destination with probability seedFanout / destinations, so the
 * seed serves about `seedFanout` peers and the pieces spread from there.
 * Given its `previous` peers, a participant keeps those still online.
 */
export function choosePeers (input: PeerSetInput): string[] {
  const { seed, size, random, previous } = input
  const online = new Set(input.others)
  const prefer = new Set((input.prefer ?? []).filter(p => online.has(p)))
  const kept = (previous ?? []).filter(p => p !== seed && online.has(p) && !prefer.has(p))
  const keptSet = new Set(kept)
  const rest = input.others.filter(a => a !== seed && !prefer.has(a) && !keptSet.has(a))
  const destinations = rest.length + kept.length + prefer.size + 1
  const seedOnline = seed !== undefined && online.has(seed)
  // A small swarm gives everyone the seed; a large one keeps whom it gave it to.
  const withSeed = seedOnline && (destinations <= input.seedFanout ||
    (previous !== undefined ? previous.includes(seed) : random() * destinations < input.seedFanout))
  const first = [...(withSeed ? [seed] : []), ...prefer, ...kept]
  return [...first, ...sample(rest, Math.max(0, size - first.length), random)].slice(0, size)
}

/** `k` items of `items` drawn without replacement (a partial Fisher–Yates on a copy). */
export function sample<T> (items: readonly T[], k: number, random: () => number): T[] {
  const copy = [...items]
  const n = Math.min(k, copy.length)
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (copy.length - i));
    [copy[i], copy[j]] = [copy[j], copy[i]]
  }
  return copy.slice(0, n)
}
