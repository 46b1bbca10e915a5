/**
 * npm run bench:swarm — one image to N hosts, peer to peer, against the bound.
 *
 * One seed and N destination agents (separate processes on loopback), every
 * agent's upload capped at u, a file of F bytes. Prints, measured in one run:
 * T_swarm and its ratio to the lower bound for peer-assisted distribution
 * (Kumar & Ross, 2006) T_min = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)); the time
 * T_star of the same N copies as N independent transfers, and T_star/T_swarm;
 * and the bytes the seed uploaded divided by F.
 *
 *   npm run bench:swarm -- [--n 8] [--size 256MiB] [--rate 16MiB] [--piece 4MiB] [--no-star] [--json] [--trace]
 *
 * --trace logs at info level and prints, for the distribution, when each
 * phase began at each process (from their logs), in seconds after the submit.
 */
import { parseArgs } from 'node:util'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseSize } from '../protocols/index.ts'
import { BenchMesh } from './bench-mesh.ts'
import { MiB, cpuSeconds, note, report, round } from './bench-util.ts'
import { traceLines } from './bench-swarm-trace.ts'

const { values: args } = parseArgs({
  options: {
    n: { type: 'string', default: '8' },
    size: { type: 'string', default: '256MiB' },
    rate: { type: 'string', default: '16MiB' },
    piece: { type: 'string', default: '4MiB' },
    json: { type: 'boolean', default: false },
    // Skips the N independent copies (the slow half of the run) while tuning the swarm.
    'no-star': { type: 'boolean', default: false },
    trace: { type: 'boolean', default: false }
  }
})
const N = Number(args.n)
const F = parseSize(args.size)
const u = parseSize(args.rate)
const names = Array.from({ length: N }, (_, i) => `host-${i + 1}`)
// The seed serves a deterministic random object; no disk is involved on its side.
const SOURCE = `random://?size=${F}&seed=7&via=seed`

async function statusOf (mesh: BenchMesh, name: string): Promise<{ counters: { bytesServed: number } }> {
  const info = JSON.parse(await readFile(join(mesh.dir, `${name}-ready.json`), 'utf8')) as { statusUrl: string }
  return await (await fetch(info.statusUrl)).json() as { counters: { bytesServed: number } }
}

async function waitDone (mesh: BenchMesh, id: string): Promise<{ state: string, lastError?: unknown }> {
  let last: { state: string, lastError?: unknown } | undefined
  await mesh.until(async () => {
    last = (await mesh.api('GET', `/v1/transfers/${id}`)).body as typeof last
    return ['succeeded', 'failed', 'canceled'].includes(last?.state ?? '')
  }, 3_600_000, `transfer ${id}`, 50)
  return last as { state: string }
}

async function submit (mesh: BenchMesh, body: unknown): Promise<string> {
  const res = await mesh.api('POST', '/v1/transfers', body)
  if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${JSON.stringify(res.body)}`)
  return (res.body as { id: string }).id
}

const mesh = await BenchMesh.create()
try {
  const logLevel = args.trace ? 'info' : 'warn'
  await mesh.startCoordinator({ STACCATO_PIECE_SIZE: String(parseSize(args.piece)), STACCATO_MAX_PER_AGENT: String(N + 1), STACCATO_MAX_ACTIVE: String(4 * N) }, logLevel)
  const cap = ['--max-upload-rate', String(u), '--status-port', '0', '--log-level', logLevel]
  await mesh.startAgent('seed', cap)
  for (const name of names) await mesh.startAgent(name, cap)
  note(`seed + ${N} destinations up; F = ${F / MiB} MiB, every upload capped at ${u / MiB} MiB/s`)

  // Warm the seed's manifest cache, so that T_swarm measures distribution, not the one-time hashing.
  const warm = await submit(mesh, { source: SOURCE, destinations: [`agent://${names[0]}/vol/warm.img`] })
  await waitDone(mesh, warm)

  const seedBefore = (await statusOf(mesh, 'seed')).counters.bytesServed
  // CPU the agents spend on the distribution: on a shared machine less noisy than its wall time.
  const agentCpu = (): number => [...mesh.agents.values()].reduce((sum, a) => sum + cpuSeconds(a.pid), 0)
  const cpuBefore = agentCpu()
  let start = performance.now()
  const submittedAt = Date.now()
  const dist = await submit(mesh, { source: SOURCE, destinations: names.map(n => `agent://${n}/vol/swarm.img`) })
  const swarm = await waitDone(mesh, dist)
  const tSwarm = (performance.now() - start) / 1000
  if (args.trace) for (const line of await traceLines(join(mesh.dir, 'logs'), dist, submittedAt)) note(line)
  if (swarm.state !== 'succeeded') throw new Error(`distribution ended ${swarm.state}: ${JSON.stringify(swarm.lastError)}`)
  const swarmCpu = agentCpu() - cpuBefore
  const seedUpload = (await statusOf(mesh, 'seed')).counters.bytesServed - seedBefore
  note(`swarm: ${round(tSwarm)} s`)

  // The same N copies as N independent single-destination transfers, all at once.
  let tStar = NaN
  if (!args['no-star']) {
    start = performance.now()
    const ids = await Promise.all(names.map(async n => await submit(mesh, { source: SOURCE, destination: `agent://${n}/vol/star.img` })))
    const ends = await Promise.all(ids.map(async id => await waitDone(mesh, id)))
    tStar = (performance.now() - start) / 1000
    if (ends.some(e => e.state !== 'succeeded')) throw new Error(`a star transfer failed: ${JSON.stringify(ends.find(e => e.state !== 'succeeded'))}`)
    note(`star: ${round(tStar)} s`)
  }

  // Downloads are not capped here, so F/d_min is ~0 next to the upload terms.
  const tMin = Math.max(F / u, (N * F) / (u + N * u))
  const result = {
    n: N,
    sizeBytes: F,
    uploadCapBytesPerSec: u,
    tSwarm: round(tSwarm, 3),
    tMin: round(tMin, 3),
    ratioToBound: round(tSwarm / tMin, 3),
    tStar: round(tStar, 3),
    starOverSwarm: round(tStar / tSwarm, 2),
    sourceUploadOverF: round(seedUpload / F, 3),
    swarmAgentCpuSeconds: round(swarmCpu, 1)
  }
  report(args.json, result, [
    `one image to ${N} hosts, F = ${F / MiB} MiB, upload cap u = ${u / MiB} MiB/s per agent`,
    `  T_swarm            ${result.tSwarm} s`,
    `  T_min (bound)      ${result.tMin} s   T_swarm / T_min = ${result.ratioToBound}`,
    `  T_star (N copies)  ${result.tStar} s   T_star / T_swarm = ${result.starOverSwarm}`,
    `  seed upload / F    ${result.sourceUploadOverF}`,
    `  agent CPU          ${result.swarmAgentCpuSeconds} s for the distribution, all agents together`
  ])
} finally {
  // A traced run keeps its logs for a closer look.
  await mesh.stop(args.trace)
  if (args.trace) note(`logs kept in ${join(mesh.dir, 'logs')}`)
}
