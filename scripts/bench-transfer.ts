/**
 * npm run bench:transfer [-- --size 1GiB --reps 3 --json --profile DIR --no-scp --streams 4]
 *
 * Side by side on loopback, in one run: raw TCP between two Node processes
 * (the reference R), the mesh data plane alone (random:// read by agent a,
 * streamed to agent b, written to null://), and file → file between two
 * agents on the same disk with sha256 verification and again with the fast
 * checksum mode (blake3), plus scp of the same file when a local sshd can be
 * started, and the floor: the CPU a verified encrypted copy of the file cannot
 * avoid, measured in this process (scripts/bench-floor.ts). Medians over --reps.
 * The row fileStreams is file → file (sha256) again with the transfer's byte
 * ranges on --streams data streams (4 by default); a file under 64 MiB always
 * goes on one stream, which fileStreamsRanges then shows as 1.
 * The copies of a file (file, fast, streams, scp) take turns: one of each per
 * repetition, the kind that goes first moving on at each, so that none of
 * them always meets the page cache another left.
 */
import { spawn } from 'node:child_process'
import { open, readFile, rm, stat } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { randomStream, parseSize } from '../protocols/index.ts'
import { BenchMesh } from './bench-mesh.ts'
import { freePort } from '../cli/index.ts'
import type { BenchAgent } from './bench-mesh.ts'
import { LocalSshd } from './bench-scp.ts'
import { copyFloor } from './bench-floor.ts'
import type { FloorParts } from './bench-floor.ts'
import { MIN_MULTI_STREAM_BYTES, planRanges } from '../agent/index.ts'
import { MiB, cpuSplit, flushDirtyPages, mbps, minorFaults, median, note, peakRssMiB, report, round } from './bench-util.ts'

const PEER = fileURLToPath(new URL('./bench-tcp-peer.ts', import.meta.url))
const SCP_CIPHER = 'aes128-gcm@openssh.com'
// The fast checksum mode (agent/copy/checksum.ts says why blake3).
const FAST_MODE = 'blake3'

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '1GiB' },
    reps: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    profile: { type: 'string' },
    'no-scp': { type: 'boolean', default: false },
    'sync-every': { type: 'string' },
    'node-options': { type: 'string' },
    'keep-logs': { type: 'boolean', default: false },
    // Data streams of the fileStreams row.
    streams: { type: 'string', default: '4' },
    // For profiling one part: a comma-separated subset of raw,mesh,file,fast,streams,floor (the others report null).
    only: { type: 'string', default: 'raw,mesh,file,fast,streams,floor' }
  }
})
const size = parseSize(args.size)
const parts = new Set(args.only.split(','))
const reps = Math.max(1, Number(args.reps))
const streams = Number(args.streams)
if (!Number.isInteger(streams) || streams < 1 || streams > 16) throw new Error(`--streams ${args.streams}: must be from 1 to 16`)
// Large runs get time in proportion; at worst ~20 MB/s.
const timeoutMs = 60_000 + size / 20_000

/** Reads JSON lines a child prints on stdout, one at a time. */
function jsonLines (child: ReturnType<typeof spawn>): () => Promise<Record<string, number>> {
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]()
  return async () => {
    const next = await lines.next()
    if (next.done === true) throw new Error('TCP peer exited early')
    return JSON.parse(next.value as string) as Record<string, number>
  }
}

async function rawTcp (): Promise<{ MBps: number, bytesPerCpuSecond: number }> {
  const sink = spawn(process.execPath, [PEER, 'sink'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const read = jsonLines(sink)
  const { port } = await read()
  const source = spawn(process.execPath, [PEER, 'source', String(port), String(size)], { stdio: ['ignore', 'ignore', 'inherit'] })
  const sourceDone = new Promise(resolve => source.once('exit', resolve))
  const result = await read()
  await sourceDone
  if (result.bytes !== size) throw new Error(`raw TCP sink got ${result.bytes} of ${size} bytes`)
  return { MBps: mbps(size, result.ms), bytesPerCpuSecond: size / result.cpuSeconds }
}

interface Run { MBps: number, cpuA: number, cpuB: number, sysA: number, sysB: number, faultsA: number, faultsB: number }

async function timed (mesh: BenchMesh, a: BenchAgent, b: BenchAgent, source: string, destination: string, extra: Record<string, unknown> = {}): Promise<Run> {
  const before = { a: cpuSplit(a.pid), b: cpuSplit(b.pid) }
  const faults = { a: minorFaults(a.pid), b: minorFaults(b.pid) }
  const { id } = await mesh.run(source, destination, timeoutMs, extra)
  const ms = await mesh.executorMs(b.name, id)
  const after = { a: cpuSplit(a.pid), b: cpuSplit(b.pid) }
  const faultsA = minorFaults(a.pid) - faults.a
  const faultsB = minorFaults(b.pid) - faults.b
  const used = (x: 'a' | 'b'): number => after[x].user + after[x].system - before[x].user - before[x].system
  return { MBps: mbps(size, ms), cpuA: used('a'), cpuB: used('b'), sysA: after.a.system - before.a.system, sysB: after.b.system - before.b.system, faultsA, faultsB }
}

/** One line per run: each agent's CPU (system part) and minor page faults per GiB moved. */
function detail (label: string, runs: Run[]): void {
  const GiB = size / (1024 * MiB)
  for (const r of runs) {
    note(`  ${label}: ${round(r.MBps, 0)} MB/s; per GiB: a ${round(r.cpuA / GiB)} CPU-s (${round(r.sysA / GiB)} sys) ${Math.round(r.faultsA / GiB)} faults, b ${round(r.cpuB / GiB)} CPU-s (${round(r.sysB / GiB)} sys) ${Math.round(r.faultsB / GiB)} faults`)
  }
}

async function writeSourceFile (path: string): Promise<void> {
  const fh = await open(path, 'w')
  try {
    for await (const chunk of randomStream('bench', 0, size)) await fh.write(chunk)
  } finally {
    await fh.close()
  }
  // Read it once so every repetition starts with the page cache warm.
  for await (const _chunk of readWhole(path)) { /* warm */ }
}

async function * readWhole (path: string): AsyncGenerator<Buffer> {
  const fh = await open(path, 'r')
  try {
    const buffer = Buffer.allocUnsafe(4 * MiB)
    while (true) {
      const { bytesRead } = await fh.read(buffer, 0, buffer.length)
      if (bytesRead === 0) return
      yield buffer
    }
  } finally {
    await fh.close()
  }
}

function summarize (runs: Run[]): { MBps: number, bytesPerCpuSecond: number, cpuSecondsA: number, cpuSecondsB: number, sysSecondsA: number, sysSecondsB: number } {
  return {
    MBps: median(runs.map(r => r.MBps)),
    bytesPerCpuSecond: median(runs.map(r => size / (r.cpuA + r.cpuB))),
    cpuSecondsA: median(runs.map(r => r.cpuA)),
    cpuSecondsB: median(runs.map(r => r.cpuB)),
    sysSecondsA: median(runs.map(r => r.sysA)),
    sysSecondsB: median(runs.map(r => r.sysB))
  }
}

async function main (): Promise<void> {
  note(`bench:transfer: ${size} bytes, ${reps} repetitions, median reported`)
  const raw = []
  for (let i = 0; i < reps && parts.has('raw'); i++) raw.push(await rawTcp())
  const R = median(raw.map(r => r.MBps))
  note(`raw TCP: ${raw.map(r => round(r.MBps, 0)).join(', ')} MB/s`)

  const nodeOptions = [args.profile !== undefined ? `--cpu-prof --cpu-prof-dir=${args.profile}` : '', args['node-options'] ?? ''].join(' ').trim()
  const agentEnv: NodeJS.ProcessEnv = nodeOptions !== '' ? { NODE_OPTIONS: nodeOptions } : {}
  const agentArgs = ['--log-level', 'info', ...(args['sync-every'] !== undefined ? ['--sync-every', args['sync-every']] : [])]
  const mesh = await BenchMesh.create()
  let sshd: LocalSshd | string = 'skipped (--no-scp)'
  try {
    await mesh.startCoordinator()
    const a = await mesh.startAgent('a', agentArgs, agentEnv)
    const b = await mesh.startAgent('b', agentArgs, agentEnv)

    const meshRuns: Run[] = []
    for (let i = 0; i < reps && parts.has('mesh'); i++) meshRuns.push(await timed(mesh, a, b, `random://?size=${size}&seed=${i}&via=a`, 'null://?via=b'))
    note(`mesh random → null: ${meshRuns.map(r => round(r.MBps, 0)).join(', ')} MB/s`)
    detail('mesh', meshRuns)

    const sourceFile = join(a.volume, 'source.bin')
    if (parts.has('file') || parts.has('fast') || parts.has('streams') || parts.has('floor') || args['no-scp'] !== true) await writeSourceFile(sourceFile)
    // The floor first, with the agents idle: the same file, in this process, to the same disk.
    const floorRuns: Array<Awaited<ReturnType<typeof copyFloor>>> = []
    for (let i = 0; i < reps && parts.has('floor'); i++) floorRuns.push(await copyFloor(sourceFile, join(b.volume, 'floor-copy.bin')))
    note(`floor (read, sha256 × 2, AES-256-GCM seal + open in 1 MiB records, write): ${floorRuns.map(r => round(r.cpuSeconds / (size / 1e9), 2)).join(', ')} CPU-s per GB`)
    const floorParts = floorRuns.length === 0 ? null : Object.fromEntries(Object.keys(floorRuns[0].parts).map(k => [k, round(median(floorRuns.map(r => r.parts[k as keyof FloorParts])) / (size / 1e9), 3)]))
    if (floorParts !== null) note(`  floor's parts (CPU-s per GB, medians): ${JSON.stringify(floorParts)}`)
    const fileRuns: Run[] = []
    const fastRuns: Run[] = []
    const streamRuns: Run[] = []
    const scpRuns: number[] = []
    if (args['no-scp'] !== true) {
      sshd = await LocalSshd.start(await freePort())
      if (typeof sshd === 'string') note(`scp: not measured: ${sshd}`)
    }
    const ssh = typeof sshd !== 'string' ? sshd : undefined
    // One copy of each kind per turn, the kind that goes first moving on at each turn: a copy's time follows the page
    // cache's state (writing 1 GiB cost 0.4 to 2.0 s of system time here, by what the cache held), so scp and the
    // agents meet the same states, instead of scp's copies all coming last.
    const kinds: Array<{ name: string, copy: (i: number) => Promise<void> }> = [
      ...(parts.has('file') ? [{ name: 'file', copy: async (i: number) => { fileRuns.push(await timed(mesh, a, b, 'agent://a/vol/source.bin', `agent://b/vol/copy-${i}.bin`)); await rm(join(b.volume, `copy-${i}.bin`)) } }] : []),
      ...(parts.has('fast') ? [{ name: FAST_MODE, copy: async (i: number) => { fastRuns.push(await timed(mesh, a, b, 'agent://a/vol/source.bin', `agent://b/vol/fast-${i}.bin`, { checksumMode: FAST_MODE })); await rm(join(b.volume, `fast-${i}.bin`)) } }] : []),
      ...(parts.has('streams') ? [{ name: 'streams', copy: async (i: number) => { streamRuns.push(await timed(mesh, a, b, 'agent://a/vol/source.bin', `agent://b/vol/streams-${i}.bin`, { streams })); await rm(join(b.volume, `streams-${i}.bin`)) } }] : []),
      ...(ssh !== undefined
        ? [{
            name: 'scp',
            copy: async () => {
              const dest = join(b.volume, 'scp-copy.bin')
              scpRuns.push(mbps(size, ssh.scp(sourceFile, dest, SCP_CIPHER)))
              if ((await stat(dest)).size !== size) throw new Error('scp copied a different size')
              await rm(dest)
            }
          }]
        : [])
    ]
    const order: string[][] = []
    for (let i = 0; i < reps; i++) {
      const turn = [...kinds.slice(i % Math.max(1, kinds.length)), ...kinds.slice(0, i % Math.max(1, kinds.length))]
      order.push(turn.map(k => k.name))
      for (const k of turn) {
        flushDirtyPages()
        await k.copy(i)
      }
    }
    note(`order of the copies, turn by turn: ${order.map(t => t.join(' → ')).join('; ')}`)
    note(`file → file (sha256): ${fileRuns.map(r => round(r.MBps, 0)).join(', ')} MB/s`)
    detail('file', fileRuns)
    note(`file → file (${FAST_MODE}): ${fastRuns.map(r => round(r.MBps, 0)).join(', ')} MB/s`)
    detail(FAST_MODE, fastRuns)
    const ranges = planRanges(size, streams).length
    note(`file → file (sha256, ${streams} streams, ${ranges} ranges${size < MIN_MULTI_STREAM_BYTES ? ': under 64 MiB, one stream' : ''}): ${streamRuns.map(r => round(r.MBps, 0)).join(', ')} MB/s`)
    detail('streams', streamRuns)
    if (ssh !== undefined) note(`scp -c ${SCP_CIPHER}: ${scpRuns.map(r => round(r, 0)).join(', ')} MB/s`)

    const m = summarize(meshRuns)
    const f = summarize(fileRuns)
    const fast = summarize(fastRuns)
    const multi = summarize(streamRuns)
    const GB = size / 1e9
    const floorCpu = floorRuns.length > 0 ? median(floorRuns.map(r => r.cpuSeconds / GB)) : NaN
    const fileCpu = fileRuns.length > 0 ? median(fileRuns.map(r => (r.cpuA + r.cpuB) / GB)) : NaN
    const fastCpu = fastRuns.length > 0 ? median(fastRuns.map(r => (r.cpuA + r.cpuB) / GB)) : NaN
    const streamsCpu = streamRuns.length > 0 ? median(streamRuns.map(r => (r.cpuA + r.cpuB) / GB)) : NaN
    const orNull = (x: number, digits?: number): number | null => Number.isFinite(x) ? round(x, digits) : null
    const scpMBps = scpRuns.length > 0 ? median(scpRuns) : null
    const rss = { a: peakRssMiB(a.pid), b: peakRssMiB(b.pid) }
    const result = {
      sizeBytes: size,
      reps,
      rawTcpMBps: round(R, 1),
      meshMBps: round(m.MBps, 1),
      meshOverRaw: round(m.MBps / R, 3),
      fileMBps: round(f.MBps, 1),
      fileOverRaw: round(f.MBps / R, 3),
      scpMBps: scpMBps === null ? null : round(scpMBps, 1),
      fileOverScp: scpMBps === null ? null : round(f.MBps / scpMBps, 3),
      // The same file copy with the fast checksum mode.
      fileFastMode: FAST_MODE,
      fileFastMBps: orNull(fast.MBps, 1),
      fileFastOverScp: scpMBps === null ? null : orNull(fast.MBps / scpMBps, 3),
      // The sha256 file copy on several data streams (on 2 shared cores it is not expected to beat one stream).
      fileStreams: streams,
      fileStreamsRanges: ranges,
      fileStreamsMBps: orNull(multi.MBps, 1),
      fileStreamsOverScp: scpMBps === null ? null : orNull(multi.MBps / scpMBps, 3),
      fileStreamsCpuSecondsPerGB: orNull(streamsCpu, 3),
      // CPU seconds per GB (1e9 bytes): the floor in this process, both agents together for the copies.
      floorCpuSecondsPerGB: orNull(floorCpu, 3),
      // What each part of the floor cost (read, sha256 both ends, seal, open, write, sync).
      floorPartsCpuSecondsPerGB: floorParts,
      fileCpuSecondsPerGB: orNull(fileCpu, 3),
      fileFastCpuSecondsPerGB: orNull(fastCpu, 3),
      fileOverFloor: orNull(fileCpu / floorCpu, 3),
      fileFastOverFloor: orNull(fastCpu / floorCpu, 3),
      scpNote: typeof sshd === 'string' ? sshd : undefined,
      agentPeakRssMiB: round(Math.max(rss.a, rss.b), 1),
      agentPeakRssMiBByAgent: { a: round(rss.a, 1), b: round(rss.b, 1) },
      // Bytes moved per CPU-second, both agents' CPU counted (MB per CPU-second).
      rawTcpMBPerCpuSecond: round(median(raw.map(r => r.bytesPerCpuSecond)) / 1e6, 1),
      meshMBPerCpuSecond: round(m.bytesPerCpuSecond / 1e6, 1),
      fileMBPerCpuSecond: round(f.bytesPerCpuSecond / 1e6, 1),
      // CPU seconds of each agent per transfer, and how much of it the kernel's (system time).
      meshCpuSeconds: { a: round(m.cpuSecondsA), b: round(m.cpuSecondsB), aSystem: round(m.sysSecondsA), bSystem: round(m.sysSecondsB) },
      fileCpuSeconds: { a: round(f.cpuSecondsA), b: round(f.cpuSecondsB), aSystem: round(f.sysSecondsA), bSystem: round(f.sysSecondsB) },
      loadAverage: round(loadavg()[0]),
      // Which copy went first at each turn (the runs above are in turn order).
      copyOrder: order,
      runsMBps: { raw: raw.map(r => round(r.MBps, 1)), mesh: meshRuns.map(r => round(r.MBps, 1)), file: fileRuns.map(r => round(r.MBps, 1)), fileFast: fastRuns.map(r => round(r.MBps, 1)), fileStreams: streamRuns.map(r => round(r.MBps, 1)), scp: scpRuns.map(r => round(r, 1)) }
    }
    report(args.json, result, [
      `size ${size} bytes, ${reps} repetitions (medians)`,
      `raw TCP (R)              ${result.rawTcpMBps} MB/s`,
      `mesh random → null       ${result.meshMBps} MB/s   ${result.meshOverRaw} × R   ${result.meshMBPerCpuSecond} MB per CPU-second`,
      `file → file (sha256)     ${result.fileMBps} MB/s   ${result.fileOverRaw} × R   ${result.fileMBPerCpuSecond} MB per CPU-second`,
      `file → file (${FAST_MODE})     ${result.fileFastMBps ?? '-'} MB/s   file/scp ${result.fileFastOverScp ?? '-'}`,
      `file → file (${streams} streams) ${result.fileStreamsMBps ?? '-'} MB/s   ${ranges} ranges   ${result.fileStreamsCpuSecondsPerGB ?? '-'} CPU-s per GB   file/scp ${result.fileStreamsOverScp ?? '-'}`,
      `CPU-s per GB             floor ${result.floorCpuSecondsPerGB ?? '-'}, file ${result.fileCpuSecondsPerGB ?? '-'} (${result.fileOverFloor ?? '-'} × floor), ${FAST_MODE} ${result.fileFastCpuSecondsPerGB ?? '-'} (${result.fileFastOverFloor ?? '-'} × floor)`,
      scpMBps === null ? `scp                      not measured (${result.scpNote ?? ''})` : `scp -c ${SCP_CIPHER}   ${result.scpMBps} MB/s   file/scp ${result.fileOverScp}`,
      `agent peak RSS           a ${result.agentPeakRssMiBByAgent.a} MiB, b ${result.agentPeakRssMiBByAgent.b} MiB`
    ])
  } catch (err) {
    note(`agent b log tail:\n${(await readFile(join(mesh.dir, 'logs', 'b.log'), 'utf8').catch(() => '')).split('\n').slice(-10).join('\n')}`)
    throw err
  } finally {
    if (typeof sshd !== 'string') await sshd.stop()
    await mesh.stop(args['keep-logs'])
    if (args['keep-logs']) note(`logs kept in ${mesh.dir}/logs`)
  }
}

await main()
