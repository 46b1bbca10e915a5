/**
 * npm run bench:swarm-sim — the swarm at data-centre scale, by simulation.
 *
 * Runs the swarm's own policy code (the agent's picker, bitfields, super-
 * seeding rule and token buckets; the coordinator's peer-set selection) over
 * N simulated hosts in virtual time (agent/swarm/sim/). Prints per scenario:
 * completion p50/p99/max ÷ the Kumar–Ross bound T_min = max(F/u_s, F/d_min,
 * N·F/(u_s + Σu_i)), source upload ÷ F, the share of each host's upload used,
 * bytes wasted (endgame duplicates, corrupt pieces) and tracker messages per host.
 *
 *   npm run bench:swarm-sim -- [--scenario uniform|bimodal|longtail|churn|slow|validate|all] [--n 1000]
 *     [--size 1GiB] [--piece 4MiB] [--rate 125MB] [--seed 1] [--peers 16] [--seed-fanout 32] [--outstanding 4] [--json]
 *   npm run bench:swarm-sim -- --validate [--n 4] [--size 64MiB] [--rate 16MiB] [--verify-rate 1GB] [--json]
 *     (simulated and measured side by side: runs bench:swarm with the same caps; needs a quiet machine.
 *     --verify-rate models the destinations' sha256 of each piece, on arrival and read back from the target; 0 leaves CPU out)
 */
import { parseArgs } from 'node:util'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { parseSize } from '../protocols/index.ts'
import { MAX_OUTSTANDING, SCENARIOS, SCENARIO_NOTES, runScenario } from '../agent/index.ts'
import type { ScenarioFigures, ScenarioName } from '../agent/index.ts'
import { PEERS_PER_PARTICIPANT, SEED_FANOUT, choosePeers } from '../coordinator/index.ts'
import { note } from './bench-util.ts'

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'all' },
    n: { type: 'string', default: '1000' },
    size: { type: 'string', default: '1GiB' },
    piece: { type: 'string', default: '4MiB' },
    // A 1 Gb/s NIC.
    rate: { type: 'string', default: '125MB' },
    seed: { type: 'string', default: '1' },
    peers: { type: 'string', default: String(PEERS_PER_PARTICIPANT) },
    'seed-fanout': { type: 'string', default: String(SEED_FANOUT) },
    // Requests in flight to one peer; the agent's is MAX_OUTSTANDING.
    outstanding: { type: 'string', default: String(MAX_OUTSTANDING) },
    validate: { type: 'boolean', default: false },
    // sha256 on one core: 0.81–0.85 CPU-seconds per GB (docs/benchmarks.md, bench:floor), read-back included.
    'verify-rate': { type: 'string', default: '1GB' },
    json: { type: 'boolean', default: false }
  }
})

const n = Number(args.n)
const size = parseSize(args.size)
const pieceSize = parseSize(args.piece)
const rate = parseSize(args.rate)
const peers = Number(args.peers)
const seedFanout = Number(args['seed-fanout'])

function simulateOne (scenario: ScenarioName, hosts = n, verifyBytesPerSec?: number): ScenarioFigures {
  return runScenario({
    verifyBytesPerSec,
    scenario,
    n: hosts,
    size,
    pieceSize,
    rate,
    seed: Number(args.seed),
    maxOutstanding: Number(args.outstanding),
    // Host 0 is the seed; the coordinator's choosePeers works on agent names.
    tracker: random => (self, others, prefer, previous) => choosePeers({
      seed: self === 0 ? undefined : '0', others: others.map(String), prefer: prefer.map(String), previous: previous?.map(String), size: peers, seedFanout, random
    }).map(Number)
  })
}

if (args.validate) {
  // The same caps on real processes (bench:swarm: every upload capped, downloads not) against the simulation.
  const verify = parseSize(args['verify-rate'])
  const simulated = simulateOne('validate', n, verify > 0 ? verify : undefined)
  const script = fileURLToPath(new URL('./bench-swarm.ts', import.meta.url))
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--n', String(n), '--size', args.size, '--rate', args.rate, '--piece', args.piece, '--no-star', '--json'], { maxBuffer: 1 << 24, timeout: 3_600_000 })
  const measured = JSON.parse(stdout.trim().split('\n').at(-1) as string) as { tSwarm?: number, tMin?: number, ratioToBound?: number }
  const tReal = measured.tSwarm ?? NaN
  // bench:swarm's T_swarm runs until the last destination is done: the simulation's max.
  const ratio = Math.round(simulated.maxSeconds / tReal * 1000) / 1000
  const result = {
    n, sizeBytes: size, rateBytesPerSec: rate, verifyBytesPerSec: verify,
    simulatedSeconds: simulated.maxSeconds, measuredSeconds: tReal, simulatedOverMeasured: ratio,
    simulatedOverBound: simulated.maxOverBound, measuredOverBound: measured.ratioToBound,
    // The criterion: simulated and measured agree within 15 %.
    withinTolerance: Math.abs(ratio - 1) <= 0.15,
    simulated, measured
  }
  if (args.json) console.log(JSON.stringify(result))
  else {
    note(`N = ${n}, F = ${args.size}, uploads capped at ${args.rate}/s: simulated ${simulated.maxSeconds} s (${simulated.maxOverBound} × bound), ` +
      `measured ${tReal} s (${measured.ratioToBound} × bound); simulated ÷ measured ${ratio}${result.withinTolerance ? ' (within 15 %)' : ' (NOT within 15 %)'}`)
  }
} else {
  const chosen = args.scenario === 'all' ? SCENARIOS.filter(s => s !== 'validate') : [args.scenario as ScenarioName]
  for (const s of chosen) if (!SCENARIOS.includes(s)) throw new Error(`--scenario: one of ${SCENARIOS.join(', ')} or all`)
  const results: ScenarioFigures[] = []
  for (const scenario of chosen) {
    const started = performance.now()
    const f = simulateOne(scenario)
    results.push(f)
    if (!args.json) {
      note(`${scenario} (${SCENARIO_NOTES[scenario]}), N = ${n}, F = ${args.size}, piece ${args.piece}: bound ${f.boundSeconds} s; ` +
        `p50 ${f.p50OverBound} · p99 ${f.p99OverBound} · max ${f.maxOverBound} × bound; seed upload ${f.seedUploadOverF} × F; ` +
        `upload used mean ${f.uploadUsed.mean} (p10 ${f.uploadUsed.p10}); wasted dup ${f.wastedDuplicateShare}, corrupt ${f.wastedCorruptShare} of N·F; ` +
        `tracker ${f.trackerMessagesPerHost} msg/host; unfinished ${f.unfinished} (corrupt hosts unfinished ${f.corruptUnfinished}); ${f.events} events in ${Math.round(performance.now() - started) / 1000} s`)
    }
  }
  if (args.json) console.log(JSON.stringify(results))
}
