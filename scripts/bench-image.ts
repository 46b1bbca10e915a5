/**
 * npm run bench:image — an image from a registry to N hosts: preheat, then pulls through each host's mirror.
 *
 * A real docker-registry on loopback holds an image of L random layers; N
 * agents (every upload capped at u, as in bench:swarm), each with its
 * registry mirror. Prints, measured in one run: the preheat time over the
 * peer-assisted bound (Kumar & Ross, 2006) for the image's size S — the
 * first agent seeds, the other N−1 download and all N upload, so
 * T_min = max(S/u, (N−1)·S/(N·u)) = S/u; the registry egress (blob bytes the
 * agents read from it) over S; a preheated (warm) pull through one host's
 * mirror over `skopeo copy` straight from the registry; and a cold pull (a
 * second image, not preheated) on all N hosts at once over the direct one,
 * with its registry egress over S.
 *
 * The client's floor: the same `skopeo copy docker://…` from nginx serving
 * the image's OCI layout as a static registry (sendfile; no hashing, no
 * policy, no look-ups). skopeo's own work (hashing every blob, writing it) is
 * in every pull; a mirror can at best take the pull down to that floor, so
 * `clientFloorOverDirect` is the least `warmPullOverDirect` any mirror could
 * show on this machine. (`skopeo copy oci:…` from the layout is no floor: it
 * measured slower than the pull from the registry.) The direct, floor and
 * warm pulls are each run `--pulls` times in turn, and their medians taken
 * (one pull of a few hundred MiB lasts about a second).
 *
 *   npm run bench:image -- [--layers 4] [--layer-size 64MiB] [--n 8] [--rate 16MiB] [--piece 4MiB] [--pulls 3]
 *     [--profile DIR] [--json]
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parseArgs } from 'node:util'
import { freePort } from '../cli/index.ts'
import { parseSize } from '../protocols/index.ts'
import { BenchRegistry } from './bench-registry.ts'
import { BenchMesh } from './bench-mesh.ts'
import { StaticRegistry } from './bench-static-registry.ts'
import { MiB, cpuSeconds, median, note, report, round } from './bench-util.ts'

const run = promisify(execFile)
const { values: args } = parseArgs({
  options: {
    layers: { type: 'string', default: '4' },
    'layer-size': { type: 'string', default: '64MiB' },
    n: { type: 'string', default: '8' },
    rate: { type: 'string', default: '16MiB' },
    piece: { type: 'string', default: '4MiB' },
    pulls: { type: 'string', default: '3' },
    /** Writes every agent's V8 CPU profile there (summarize one with scripts/bench-profile.ts). */
    profile: { type: 'string' },
    json: { type: 'boolean', default: false }
  }
})
const L = Number(args.layers)
const layerSize = parseSize(args['layer-size'])
const N = Number(args.n)
const u = parseSize(args.rate)
const pulls = Math.max(1, Number(args.pulls))
const agentEnv: NodeJS.ProcessEnv = args.profile !== undefined ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${args.profile}` } : {}
const names = Array.from({ length: N }, (_, i) => `host-${i + 1}`)

async function statusOf (mesh: BenchMesh, name: string): Promise<{ counters: { bytesIn: Record<string, number> } }> {
  const info = JSON.parse(await readFile(join(mesh.dir, `${name}-ready.json`), 'utf8')) as { statusUrl: string }
  return await (await fetch(info.statusUrl)).json() as { counters: { bytesIn: Record<string, number> } }
}

async function egress (mesh: BenchMesh): Promise<number> {
  let sum = 0
  for (const n of names) sum += (await statusOf(mesh, n)).counters.bytesIn.oci ?? 0
  return sum
}

/** Random layers: gzip leaves them as large as they are, so S is what the layers weigh. */
function randomLayers (): Uint8Array[] {
  return Array.from({ length: L }, () => randomBytes(layerSize))
}

async function timedCopy (from: string, to: string): Promise<number> {
  await rm(to, { recursive: true, force: true })
  const start = performance.now()
  await run('/usr/bin/skopeo', ['copy', '--quiet', '--src-tls-verify=false', from, `oci:${to}:x`], { maxBuffer: 16 * MiB })
  return (performance.now() - start) / 1000
}

const reg = await BenchRegistry.start()
const mesh = await BenchMesh.create()
let statics: StaticRegistry | undefined
try {
  const S = await reg.push('warm', randomLayers(), 'bench/warm', '1')
  statics = await StaticRegistry.start(reg.layout('warm'), 'built', 'bench/warm')
  await reg.push('cold', randomLayers(), 'bench/cold', '1')
  note(`image of ${L} × ${layerSize / MiB} MiB layers pushed (S = ${round(S / MiB, 1)} MiB)`)

  await mesh.startCoordinator({ STACCATO_PIECE_SIZE: String(parseSize(args.piece)), STACCATO_MAX_PER_AGENT: String(N + 1), STACCATO_MAX_ACTIVE: String(4 * N) })
  const registries = join(mesh.dir, 'registries.yml')
  await writeFile(registries, `registries:\n  "${reg.host}": { insecure: true }\n`)
  const mirrors = new Map<string, string>()
  for (const name of names) {
    const mirror = `127.0.0.1:${await freePort()}`
    mirrors.set(name, mirror)
    await mesh.startAgent(name, [
      '--max-upload-rate', String(u), '--status-port', '0', '--log-level', 'warn', '--allow-address', 'loopback',
      '--registries-file', registries, '--registry-mirror', mirror, '--mirror-image', `${reg.host}/bench/*`
    ], agentEnv)
  }
  note(`${N} agents up, every upload capped at ${u / MiB} MiB/s`)

  const direct = async (): Promise<number> => await timedCopy(`docker://${reg.host}/bench/warm:1`, join(mesh.dir, 'direct'))
  const floor = async (): Promise<number> => await timedCopy(`docker://${(statics as StaticRegistry).host}/bench/warm:built`, join(mesh.dir, 'floor'))
  const directs: number[] = []
  const floors: number[] = []
  for (let i = 0; i < pulls; i++) { directs.push(await direct()); floors.push(await floor()) }

  let before = await egress(mesh)
  let start = performance.now()
  const res = await mesh.api('POST', '/v1/images/preheat', { image: `oci://${reg.host}/bench/warm:1`, agents: names })
  if (res.status !== 201) throw new Error(`preheat answered ${res.status}: ${JSON.stringify(res.body)}`)
  const id = (res.body as { id: string }).id
  let last: { state: string, lastError?: unknown } | undefined
  // When the seed had read the registry and made the manifest (the distribution turns active): the rest is the swarm's.
  let tManifest: number | undefined
  await mesh.until(async () => {
    last = (await mesh.api('GET', `/v1/transfers/${id}`)).body as typeof last
    if (tManifest === undefined && last?.state !== 'scheduled' && last?.state !== 'queued') tManifest = (performance.now() - start) / 1000
    return ['succeeded', 'failed', 'canceled'].includes(last?.state ?? '')
  }, 3_600_000, `preheat ${id}`, 50)
  const tPreheat = (performance.now() - start) / 1000
  note(`preheat: manifest (the seed's registry read) after ${round(tManifest ?? tPreheat)} s`)
  if (last?.state !== 'succeeded') throw new Error(`preheat ended ${last?.state ?? '?'}: ${JSON.stringify(last?.lastError)}`)
  const preheatEgress = await egress(mesh) - before
  note(`preheat: ${round(tPreheat)} s`)

  // A host other than the seed: its blobs came through the swarm.
  const host = names[Math.min(1, N - 1)]
  const warms: number[] = []
  // In turn with the direct and floor pulls, so that a busy moment of the machine does not fall on one kind only.
  const mirrorPid = (mesh.agents.get(host) as { pid: number }).pid
  let mirrorCpu = 0
  for (let i = 0; i < pulls; i++) {
    const cpuBefore = cpuSeconds(mirrorPid)
    warms.push(await timedCopy(`docker://${mirrors.get(host) as string}/bench/warm:1`, join(mesh.dir, 'warm-pull')))
    mirrorCpu += cpuSeconds(mirrorPid) - cpuBefore
    directs.push(await direct())
    floors.push(await floor())
  }
  const tWarm = median(warms)
  const tDirect = median(directs)
  const tFloor = median(floors)
  note(`direct pull ${round(tDirect)} s, client floor (skopeo from nginx) ${round(tFloor)} s, warm pull through ${host}'s mirror ${round(tWarm)} s (medians)`)

  before = await egress(mesh)
  start = performance.now()
  await Promise.all(names.map(async n => await timedCopy(`docker://${mirrors.get(n) as string}/bench/cold:1`, join(mesh.dir, `cold-${n}`))))
  const tCold = (performance.now() - start) / 1000
  const coldEgress = await egress(mesh) - before
  note(`cold pull on ${N} hosts at once: ${round(tCold)} s`)

  const tMin = S / u
  const result = {
    layers: L,
    layerBytes: layerSize,
    imageBytes: S,
    n: N,
    uploadCapBytesPerSec: u,
    tPreheat: round(tPreheat, 3),
    tPreheatManifest: round(tManifest ?? tPreheat, 3),
    tMin: round(tMin, 3),
    preheatOverBound: round(tPreheat / tMin, 3),
    // The swarm's part alone (from the manifest on), to set beside bench:swarm's T_swarm ÷ T_min for a file of S bytes.
    preheatSwarmOverBound: round((tPreheat - (tManifest ?? 0)) / tMin, 3),
    registryEgressOverImage: round(preheatEgress / S, 3),
    tDirect: round(tDirect, 3),
    tWarmPull: round(tWarm, 3),
    warmPullOverDirect: round(tWarm / tDirect, 3),
    tClientFloor: round(tFloor, 3),
    clientFloorOverDirect: round(tFloor / tDirect, 3),
    warmPullOverFloor: round(tWarm / tFloor, 3),
    // The serving agent's CPU per warm pull: what the mirror itself costs, beside skopeo's own work.
    warmPullMirrorCpuSeconds: round(mirrorCpu / pulls, 3),
    tColdPull: round(tCold, 3),
    coldPullOverDirect: round(tCold / tDirect, 3),
    coldRegistryEgressOverImage: round(coldEgress / S, 3)
  }
  report(args.json, result, [
    `an image of ${L} × ${layerSize / MiB} MiB to ${N} hosts, upload cap u = ${u / MiB} MiB/s per agent`,
    `  preheat            ${result.tPreheat} s   / T_min (S/u = ${result.tMin} s) = ${result.preheatOverBound}`,
    `    of which          ${result.tPreheatManifest} s for the manifest (the seed's registry read); the swarm after it / T_min = ${result.preheatSwarmOverBound}`,
    `  registry egress    ${result.registryEgressOverImage} × S during the preheat`,
    `  warm pull          ${result.tWarmPull} s   / direct ${result.tDirect} s = ${result.warmPullOverDirect}`,
    `  client floor       ${result.tClientFloor} s   (skopeo from nginx serving the layout) / direct = ${result.clientFloorOverDirect}; warm pull / floor = ${result.warmPullOverFloor}; the mirror's agent used ${result.warmPullMirrorCpuSeconds} CPU-s a pull`,
    `  cold pull (all N)  ${result.tColdPull} s   / direct = ${result.coldPullOverDirect}; registry egress ${result.coldRegistryEgressOverImage} × S`
  ])
} finally {
  await statics?.stop()
  await mesh.stop()
  await reg.stop()
}
