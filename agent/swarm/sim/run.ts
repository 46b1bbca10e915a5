import { kumarRossBound } from './bound.ts'
import { simulate } from './engine.ts'
import type { SimOutcome, Tracker } from './engine.ts'
import { quantile, seededRandom } from './random.ts'
import { scenarioHosts } from './scenario.ts'
import type { HostSpec, ScenarioName } from './scenario.ts'

export interface ScenarioRun {
  scenario: ScenarioName
  n: number
  size: number
  pieceSize: number
  rate: number
  seed: number
  /** Builds the tracker for this run from its random generator (the coordinator's choosePeers, in the bench). */
  tracker: (random: () => number) => Tracker
  maxOutstanding: number
  /** Hashing speed of a destination (SimConfig.verifyBytesPerSec); CPU is left out when absent. */
  verifyBytesPerSec?: number
}

export interface ScenarioFigures {
  scenario: ScenarioName
  n: number
  sizeBytes: number
  pieceBytes: number
  boundSeconds: number
  p50Seconds: number
  p99Seconds: number
  maxSeconds: number
  p50OverBound: number
  p99OverBound: number
  maxOverBound: number
  /** Honest destinations that did not finish before the simulation's time limit. */
  unfinished: number
  /** Corrupt destinations (left out of the times and the bound) that had not finished when the honest ones had. */
  corruptUnfinished: number
  seedUploadOverF: number
  /** Bytes each destination served ÷ (its upload capacity × the time until the last one finished). */
  uploadUsed: { mean: number, p10: number, p50: number, p90: number }
  /** Bytes received and thrown away ÷ N·F (all the bytes the destinations need). */
  wastedDuplicateShare: number
  wastedCorruptShare: number
  trackerMessagesPerHost: number
  events: number
}

/** The session's tick and the service's redial period (agent/swarm/session.ts, service.ts). */
const TICK_MS = 1000
const REDIAL_MS = 2000

export function runScenario (run: ScenarioRun): ScenarioFigures {
  const random = seededRandom(run.seed)
  const { seed, hosts } = scenarioHosts(run.scenario, run.n, run.rate, run.size, random)
  const bound = scenarioBound(run.size, seed, hosts)
  const outcome = simulate({
    size: run.size,
    pieceSize: run.pieceSize,
    seed,
    hosts,
    tracker: run.tracker(random),
    maxOutstanding: run.maxOutstanding,
    verifyBytesPerSec: run.verifyBytesPerSec,
    random,
    tickMs: TICK_MS,
    redialMs: REDIAL_MS,
    maxEvents: 2e9,
    // Stuck swarms end here: fifty times the bound is far past any target.
    maxTimeMs: Math.max(60_000, 50 * bound * 1000)
  })
  return summarize(run, bound, seed, hosts, outcome)
}

/**
 * The Kumar–Ross bound over the honest destinations: a corrupt host's uploads
 * are thrown away and its own completion is nobody's goal, so it counts
 * neither in N nor in Σu. (Hosts away for a while still count with their
 * whole capacity: in the churn scenario their absence lowers Σu·T by about 3 %,
 * and the bound there is the seed's F/u_s anyway.)
 */
export function scenarioBound (size: number, seed: HostSpec, hosts: readonly HostSpec[]): number {
  const honest = hosts.filter(h => !h.corrupt)
  return kumarRossBound(size, seed.up, honest.map(h => h.up), honest.map(h => h.down))
}

/**
 * Each honest destination's time, in seconds: from its first join (a late
 * joiner asked only then, as a host does that an operator adds to a running
 * distribution) to its last piece. A host that leaves and comes back is
 * counted from the start, its absence included: its user asked at the start.
 */
export function destinationTimes (hosts: readonly HostSpec[], completion: ReadonlyArray<number | undefined>): number[] {
  const times: number[] = []
  hosts.forEach((h, i) => {
    if (h.corrupt) return
    const done = completion[i]
    times.push(done === undefined ? Infinity : (done - h.joinAt) / 1000)
  })
  return times
}

export function summarize (run: Pick<ScenarioRun, 'scenario' | 'n' | 'size' | 'pieceSize'>, bound: number, seed: HostSpec, hosts: HostSpec[], o: SimOutcome): ScenarioFigures {
  const times = destinationTimes(hosts, o.completion)
  const unfinished = times.filter(t => t === Infinity).length
  const end = Math.max(...o.completion.filter((t): t is number => t !== undefined).map(t => t / 1000), 1e-9)
  const used = hosts.map((h, i) => o.served[i + 1] / (h.up * end))
  const r = (x: number): number => Math.round(x * 1000) / 1000
  const r4 = (x: number): number => Math.round(x * 10000) / 10000
  const p50 = quantile(times, 0.5)
  const p99 = quantile(times, 0.99)
  const max = quantile(times, 1)
  return {
    scenario: run.scenario,
    n: run.n,
    sizeBytes: run.size,
    pieceBytes: run.pieceSize,
    boundSeconds: r(bound),
    p50Seconds: r(p50),
    p99Seconds: r(p99),
    maxSeconds: r(max),
    p50OverBound: r(p50 / bound),
    p99OverBound: r(p99 / bound),
    maxOverBound: r(max / bound),
    unfinished,
    corruptUnfinished: hosts.filter((h, i) => h.corrupt && o.completion[i] === undefined).length,
    seedUploadOverF: r(o.served[0] / run.size),
    uploadUsed: { mean: r(used.reduce((a, b) => a + b, 0) / Math.max(1, used.length)), p10: r(quantile(used, 0.1)), p50: r(quantile(used, 0.5)), p90: r(quantile(used, 0.9)) },
    wastedDuplicateShare: r4(o.wastedDuplicate / (run.size * run.n)),
    wastedCorruptShare: r4(o.wastedCorrupt / (run.size * run.n)),
    trackerMessagesPerHost: r(o.trackerMessages / (run.n + 1)),
    events: o.events
  }
}
