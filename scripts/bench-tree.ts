/**
 * npm run bench:tree [-- --files 10000 --file-size 4KiB --dirs 100 --large-count 16 --large-size 64MiB --json --no-ssh --checksum sha256
 *                        --no-small --large-reps 1 --vs-file --profile DIR --dir DIR --tree-streams N --settle S]
 *
 * Directory trees on loopback, in one run: a tree of many small files and a
 * tree of a few large ones, each copied agent → agent (a tree transfer), and
 * beside it `scp -r` and `rsync -a` of the same tree through a private sshd;
 * then the small tree again with nothing changed (the agents' quick check,
 * sync mtime) beside rsync's no-op run. Times are the executing agent's own
 * (its log, from start to the tree's end) and the wall time of scp and rsync.
 * The small tree is copied --small-reps times by the agents and by rsync,
 * taking turns at going first, each to a new directory, and nothing is
 * deleted until all of them are done: a create's cost on this disk follows
 * the deletes of the minutes before it (see --settle), and a tool that always
 * ran first, or always after a clean-up, would meet another disk.
 * --no-small measures the large tree alone (with its rsync); --vs-file copies
 * the large tree's bytes as one file after each of its --large-reps runs
 * (medians; rsync's large run is repeated as often), which says what a tree
 * costs over a file; --profile DIR
 * writes the agents' and the coordinator's V8 CPU profiles there (read them with scripts/bench-profile.ts);
 * --tree-streams N gives the receiving agent's --tree-streams (large files carried at once; its default when absent).
 */
import { mkdir, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseSize } from '../protocols/index.ts'
import { freePort } from '../cli/index.ts'
import { BenchMesh } from './bench-mesh.ts'
import type { BenchAgent } from './bench-mesh.ts'
import { LocalSshd } from './bench-scp.ts'
import { MiB, cpuSeconds, cpuSplit, flushDirtyPages, machineCpuSeconds, mainThreadCpuSplit, mbps, threadCpuSplit, median, note, peakRssMiB, report, round } from './bench-util.ts'

// The cipher bench:transfer gives scp: the fastest of OpenSSH's on x86 with AES-NI.
const CIPHER = 'aes128-gcm@openssh.com'

const { values: args } = parseArgs({
  options: {
    files: { type: 'string', default: '10000' },
    'file-size': { type: 'string', default: '4KiB' },
    dirs: { type: 'string', default: '100' },
    'large-count': { type: 'string', default: '16' },
    'large-size': { type: 'string', default: '64MiB' },
    checksum: { type: 'string', default: 'sha256' },
    json: { type: 'boolean', default: false },
    'no-ssh': { type: 'boolean', default: false },
    'keep-logs': { type: 'boolean', default: false },
    'no-small': { type: 'boolean', default: false },
    'large-reps': { type: 'string', default: '1' },
    // Small-tree copies of each (the agents' and rsync's, taking turns at going first); medians are reported.
    'small-reps': { type: 'string', default: '3' },
    'vs-file': { type: 'boolean', default: false },
    profile: { type: 'string' },
    // Where the agents' volumes (and scp's and rsync's copies) go; the system's temporary directory by default.
    dir: { type: 'string' },
    'tree-streams': { type: 'string' },
    // Seconds to wait before the first small-tree copy: on ext4 without a journal (this VM's disk) each create skips,
    // one check each, every inode freed in the last 30-35 s (ialloc.c recently_deleted()), so a copy right after a big
    // delete (the previous bench's clean-up) pays up to ~300 µs of kernel time a file more than one run later.
    settle: { type: 'string', default: '0' }
  }
})
const noSmall = args['no-small']
const files = noSmall ? 0 : Math.max(1, Number(args.files))
const fileSize = parseSize(args['file-size'])
const dirs = Math.max(1, Math.min(Math.max(1, files), Number(args.dirs)))
const largeCount = Math.max(0, Number(args['large-count']))
const largeSize = parseSize(args['large-size'])
const largeReps = Math.max(1, Number(args['large-reps']))
const smallReps = Math.max(1, Number(args['small-reps']))
const vsFile = args['vs-file']
// Generous: at worst ~100 small files/s and ~20 MB/s on a loaded machine.
const timeoutMs = 120_000 + files * 10 + (largeCount * largeSize) / 20_000

async function writeTree (root: string, count: number, size: number, spread: number): Promise<void> {
  for (let d = 0; d < spread; d++) await mkdir(join(root, `d${String(d).padStart(3, '0')}`), { recursive: true })
  for (let i = 0; i < count; i++) {
    await writeFile(join(root, `d${String(i % spread).padStart(3, '0')}`, `f${String(i).padStart(6, '0')}.bin`), randomBytes(size))
  }
}

/** One file of `bytes` random bytes, written a MiB at a time. */
async function writeOneFile (path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w')
  try {
    for (let at = 0; at < bytes; at += MiB) await fh.write(randomBytes(Math.min(MiB, bytes - at)))
  } finally {
    await fh.close()
  }
}

/** Files and bytes under `dir`: every copy is checked complete before its time counts. */
async function census (dir: string): Promise<{ files: number, bytes: number }> {
  let n = 0
  let bytes = 0
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue
    n++
    bytes += (await stat(join(e.parentPath, e.name))).size
  }
  return { files: n, bytes }
}

async function checkCopy (what: string, dir: string, want: { files: number, bytes: number }): Promise<void> {
  const got = await census(dir)
  if (got.files !== want.files || got.bytes !== want.bytes) throw new Error(`${what}: ${got.files} files, ${got.bytes} bytes; expected ${want.files}, ${want.bytes}`)
}

/**
 * CPU seconds both agents spent on a run, beside its time: on a loaded machine (other processes on its two cores)
 * the wall time says more about the neighbours than about the agents.
 */
type CpuByProcess = Record<'a' | 'b' | 'coordinator', { user: number, system: number }>
/** The agents' main threads alone (their event loops): what a worker thread takes work off. */
type MainThreadCpu = Record<'a' | 'b', { user: number, system: number }>

/** Each process's CPU by thread name (user and system seconds): the part the main thread does not account for. */
type CpuByThread = Record<'a' | 'b' | 'coordinator', Record<string, { user: number, system: number }>>

async function agentTree (mesh: BenchMesh, b: BenchAgent, src: string, dst: string, a?: BenchAgent): Promise<{ ms: number, cpu: number | null, byProcess?: CpuByProcess, mainThread?: MainThreadCpu, byThread?: CpuByThread, files: { done: number, skipped: number } }> {
  const cpu = (): number => a === undefined ? NaN : cpuSeconds(a.pid) + cpuSeconds(b.pid)
  const coordinatorPid = mesh.coordinator?.pid
  // Each process's user and system CPU apart: where a small file's cost is (the coordinator's per-file records too).
  const split = (): CpuByProcess | undefined => a === undefined || coordinatorPid === undefined
    ? undefined
    : { a: cpuSplit(a.pid), b: cpuSplit(b.pid), coordinator: cpuSplit(coordinatorPid) }
  const main = (): MainThreadCpu | undefined => a === undefined ? undefined : { a: mainThreadCpuSplit(a.pid), b: mainThreadCpuSplit(b.pid) }
  const threads = (): Record<'a' | 'b' | 'coordinator', ReturnType<typeof threadCpuSplit>> | undefined => a === undefined || coordinatorPid === undefined
    ? undefined
    : { a: threadCpuSplit(a.pid), b: threadCpuSplit(b.pid), coordinator: threadCpuSplit(coordinatorPid) }
  const threadsBefore = threads()
  const mainBefore = main()
  const splitBefore = split()
  const cpuBefore = cpu()
  const { id } = await mesh.run(`agent://a/vol/${src}/`, `agent://b/vol/${dst}/`, timeoutMs, { checksumMode: args.checksum })
  const ms = await mesh.executorMs(b.name, id, 'tree copied')
  const t = (await mesh.api('GET', `/v1/transfers/${id}`)).body as { progress: { files: { done: number, skipped: number } } }
  const used = cpu() - cpuBefore
  const splitAfter = split()
  const mainAfter = main()
  const threadsAfter = threads()
  const byThread = threadsBefore === undefined || threadsAfter === undefined
    ? undefined
    : Object.fromEntries((['a', 'b', 'coordinator'] as const).map(k => [k, Object.fromEntries(Object.entries(threadsAfter[k]).map(([name, t]) => {
      const was = threadsBefore[k][name] ?? { user: 0, system: 0 }
      return [name, { user: round(t.user - was.user, 2), system: round(t.system - was.system, 2) }]
    }).filter(([, s]) => (s as { user: number, system: number }).user + (s as { user: number, system: number }).system > 0))])) as CpuByThread
  const mainThread = mainBefore === undefined || mainAfter === undefined
    ? undefined
    : Object.fromEntries((['a', 'b'] as const).map(k => [k, {
      user: round(mainAfter[k].user - mainBefore[k].user, 2), system: round(mainAfter[k].system - mainBefore[k].system, 2)
    }])) as MainThreadCpu
  const byProcess = splitBefore === undefined || splitAfter === undefined
    ? undefined
    : Object.fromEntries((['a', 'b', 'coordinator'] as const).map(k => [k, {
      user: round(splitAfter[k].user - splitBefore[k].user, 2), system: round(splitAfter[k].system - splitBefore[k].system, 2)
    }])) as CpuByProcess
  return { ms, cpu: Number.isNaN(used) ? null : round(used, 2), byProcess, mainThread, byThread, files: t.progress.files }
}

async function main (): Promise<void> {
  note(`bench:tree: ${files} × ${fileSize} B in ${dirs} directories; ${largeCount} × ${largeSize} B; checksum ${args.checksum}`)
  const mesh = await BenchMesh.create(args.dir)
  let sshd: LocalSshd | string = 'skipped (--no-ssh)'
  try {
    // --cpu-prof writes each process's profile when it exits (mesh.stop ends them with SIGTERM): the coordinator's first.
    const env: NodeJS.ProcessEnv = args.profile !== undefined ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${args.profile}` } : {}
    await mesh.startCoordinator(env)
    const a = await mesh.startAgent('a', ['--log-level', 'info'], env)
    const b = await mesh.startAgent('b', ['--log-level', 'info', ...(args['tree-streams'] === undefined ? [] : ['--tree-streams', args['tree-streams']])], env)
    if (!noSmall) await writeTree(join(a.volume, 'small'), files, fileSize, dirs)
    if (largeCount > 0) await writeTree(join(a.volume, 'large'), largeCount, largeSize, 1)
    const small = await census(join(a.volume, 'small')).catch(() => ({ files: 0, bytes: 0 }))
    const large = await census(join(a.volume, 'large')).catch(() => ({ files: 0, bytes: 0 }))

    // Skipped with --no-small: NaN, which the JSON shows as null.
    const none = { ms: NaN, cpu: null, files: { done: 0, skipped: 0 } }
    let ours: Awaited<ReturnType<typeof agentTree>> = none
    let noop: Awaited<ReturnType<typeof agentTree>> = none
    let scpSmall: number | null = null
    let rsyncSmall: number | null = null
    let rsyncNoop: number | null = null
    const smallRuns: Array<{ agentsSeconds: number, rsyncSeconds: number | null, agentsMachineCpuSeconds: number, rsyncMachineCpuSeconds: number | null }> = []
    let machineCpuMedians: { agents: number, rsync: number | null } | null = null
    // Started first: rsync's small copies take turns with the agents'.
    if (args['no-ssh'] !== true) sshd = await LocalSshd.start(await freePort())
    const ssh = typeof sshd !== 'string' ? sshd : undefined
    if (!noSmall) {
      const settle = Math.max(0, Number(args.settle))
      if (settle > 0) {
        note(`waiting ${settle} s for the inodes freed before this run to age (--settle)`)
        await sleep(settle * 1000)
      }
      const source = `${join(a.volume, 'small')}/`
      const runs: Array<Awaited<ReturnType<typeof agentTree>>> = []
      const rsyncTimes: number[] = []
      // The machine's busy CPU seconds over each copy, the same measure for both (rsync's is three processes and sshd).
      const machineCpu: { agents: number[], rsync: number[] } = { agents: [], rsync: [] }
      const agentsCopy = async (i: number): Promise<void> => {
        flushDirtyPages()
        const before = machineCpuSeconds()
        const run = await agentTree(mesh, b, 'small', `small-${i}`, a)
        machineCpu.agents.push(round(machineCpuSeconds() - before, 2))
        await checkCopy('agents, small tree', join(b.volume, `small-${i}`), small)
        runs.push(run)
        note(`agents, small: ${round(run.ms / 1000, 2)} s (${round(files / (run.ms / 1000), 0)} files/s)`)
      }
      const rsyncCopy = async (i: number): Promise<void> => {
        if (ssh === undefined) return
        flushDirtyPages()
        const before = machineCpuSeconds()
        rsyncTimes.push(ssh.rsync(source, `${join(b.volume, `rsync-small-${i}`)}/`, CIPHER))
        machineCpu.rsync.push(round(machineCpuSeconds() - before, 2))
        await checkCopy('rsync -a, small tree', join(b.volume, `rsync-small-${i}`), small)
        note(`rsync -a, small: ${round(rsyncTimes[rsyncTimes.length - 1] / 1000, 2)} s`)
      }
      for (let i = 0; i < smallReps; i++) {
        if (i % 2 === 1) await rsyncCopy(i)
        await agentsCopy(i)
        if (i % 2 === 0) await rsyncCopy(i)
        smallRuns.push({
          agentsSeconds: round(runs[i].ms / 1000, 3),
          rsyncSeconds: ssh === undefined ? null : round(rsyncTimes[i] / 1000, 3),
          agentsMachineCpuSeconds: machineCpu.agents[i],
          rsyncMachineCpuSeconds: ssh === undefined ? null : machineCpu.rsync[i]
        })
      }
      // The run of median time stands for the agents: its CPU figures are those of that run.
      ours = [...runs].sort((x, y) => x.ms - y.ms)[Math.floor((runs.length - 1) / 2)]
      rsyncSmall = rsyncTimes.length > 0 ? median(rsyncTimes) : null
      machineCpuMedians = { agents: median(machineCpu.agents), rsync: machineCpu.rsync.length > 0 ? median(machineCpu.rsync) : null }
      const last = smallReps - 1
      flushDirtyPages()
      noop = await agentTree(mesh, b, 'small', `small-${last}`, a)
      if (noop.files.done !== 0) throw new Error(`the no-op run copied ${noop.files.done} files`)
      note(`agents, small, nothing changed: ${round(noop.ms / 1000, 2)} s`)
      if (ssh !== undefined) {
        flushDirtyPages()
        rsyncNoop = ssh.rsync(source, `${join(b.volume, `rsync-small-${last}`)}/`, CIPHER)
        note(`rsync -a, small, nothing changed: ${round(rsyncNoop / 1000, 2)} s`)
        flushDirtyPages()
        scpSmall = ssh.scp(join(a.volume, 'small'), join(b.volume, 'scp-small'), CIPHER, true)
        await checkCopy('scp -r, small tree', join(b.volume, 'scp-small'), small)
        note(`scp -r, small: ${round(scpSmall / 1000, 2)} s`)
      }
      // Only now, with every small copy measured.
      for (let i = 0; i < smallReps; i++) {
        await rm(join(b.volume, `small-${i}`), { recursive: true, force: true })
        await rm(join(b.volume, `rsync-small-${i}`), { recursive: true, force: true })
      }
      await rm(join(b.volume, 'scp-small'), { recursive: true, force: true })
    }
    let oursLarge: number | null = null
    let largeCpu: number | null = null
    let oneFile: number | null = null
    let oneFileCpu: number | null = null
    if (largeCount > 0) {
      const trees: Array<{ ms: number, cpu: number | null }> = []
      const ones: number[] = []
      const oneCpu: number[] = []
      if (vsFile) await writeOneFile(join(a.volume, 'one.bin'), large.bytes)
      const treeRun = async (): Promise<void> => {
        flushDirtyPages()
        const run = await agentTree(mesh, b, 'large', 'large', a)
        trees.push(run)
        await checkCopy('agents, large tree', join(b.volume, 'large'), large)
        note(`agents, large: ${round(run.ms / 1000, 2)} s (${round(mbps(large.bytes, run.ms), 0)} MB/s; agents' CPU ${run.cpu ?? '-'} s)`)
        await rm(join(b.volume, 'large'), { recursive: true })
      }
      // The same bytes as one file, beside each tree run: the ratio of the two is what the tree's own path costs.
      const fileRun = async (): Promise<void> => {
        flushDirtyPages()
        const cpuBefore = cpuSeconds(a.pid) + cpuSeconds(b.pid)
        const { id } = await mesh.run('agent://a/vol/one.bin', 'agent://b/vol/one.bin', timeoutMs, { checksumMode: args.checksum })
        ones.push(await mesh.executorMs(b.name, id))
        oneCpu.push(cpuSeconds(a.pid) + cpuSeconds(b.pid) - cpuBefore)
        note(`agents, one file of the same bytes: ${round(mbps(large.bytes, ones[ones.length - 1]), 0)} MB/s; agents' CPU ${round(oneCpu[oneCpu.length - 1], 2)} s`)
        await rm(join(b.volume, 'one.bin'))
      }
      for (let i = 0; i < largeReps; i++) {
        // Taking turns at going first: the agents' first copy pays their warm-up.
        if (vsFile && i % 2 === 1) await fileRun()
        await treeRun()
        if (vsFile && i % 2 === 0) await fileRun()
      }
      oursLarge = median(trees.map(t => t.ms))
      largeCpu = median(trees.map(t => t.cpu ?? NaN))
      oneFile = ones.length > 0 ? median(ones) : null
      oneFileCpu = oneCpu.length > 0 ? median(oneCpu) : null
    }

    let rsyncLarge: number | null = null
    if (ssh !== undefined) {
      if (largeCount > 0) {
        const times: number[] = []
        for (let i = 0; i < largeReps; i++) {
          flushDirtyPages()
          times.push(ssh.rsync(`${join(a.volume, 'large')}/`, `${join(b.volume, 'rsync-large')}/`, CIPHER))
          await checkCopy('rsync -a, large tree', join(b.volume, 'rsync-large'), large)
          await rm(join(b.volume, 'rsync-large'), { recursive: true })
          note(`rsync -a, large: ${round(times[i] / 1000, 2)} s`)
        }
        rsyncLarge = median(times)
      }
    } else {
      note(`scp and rsync: not measured: ${String(sshd)}`)
    }
    const ratio = (theirs: number | null, mine: number | null): number | null => theirs === null || mine === null ? null : round(theirs / mine, 3)
    const result = {
      files,
      fileSizeBytes: fileSize,
      dirs,
      largeCount,
      largeSizeBytes: largeSize,
      checksumMode: args.checksum,
      treeStreams: args['tree-streams'] === undefined ? 'default' : Number(args['tree-streams']),
      settleSeconds: Math.max(0, Number(args.settle)),
      smallSeconds: round(ours.ms / 1000, 3),
      smallFilesPerSec: round(files / (ours.ms / 1000), 1),
      // Both agents' CPU seconds (user + system) over the run, from the submit to the record's end.
      smallAgentCpuSeconds: ours.cpu,
      // User and system CPU seconds of each process (the coordinator too) over the small tree's run.
      smallCpuByProcess: ours.byProcess ?? null,
      smallMainThreadCpu: ours.mainThread ?? null,
      smallCpuByThread: ours.byThread ?? null,
      smallReps,
      // Each turn's two copies (the agents' first on even turns, rsync's on odd ones): the medians above are of these.
      smallRuns,
      // Medians of the machine's busy CPU seconds over each small copy: what each way costs the 2 cores, side by side.
      smallMachineCpuSeconds: machineCpuMedians?.agents ?? null,
      rsyncSmallMachineCpuSeconds: machineCpuMedians?.rsync ?? null,
      scpSmallSeconds: scpSmall === null ? null : round(scpSmall / 1000, 3),
      rsyncSmallSeconds: rsyncSmall === null ? null : round(rsyncSmall / 1000, 3),
      // Speed ratios: above 1, the agents are faster.
      smallOverScp: ratio(scpSmall, ours.ms),
      smallOverRsync: ratio(rsyncSmall, ours.ms),
      largeMBps: oursLarge === null ? null : round(mbps(large.bytes, oursLarge), 1),
      rsyncLargeMBps: rsyncLarge === null ? null : round(mbps(large.bytes, rsyncLarge), 1),
      largeOverRsync: ratio(rsyncLarge, oursLarge),
      // Both agents' CPU seconds over the large tree's run: on a loaded machine a steadier figure than its time.
      largeAgentCpuSeconds: largeCpu === null || Number.isNaN(largeCpu) ? null : round(largeCpu, 2),
      // With --vs-file: the same bytes as one file, file → file, and the tree's speed over it (1: a tree costs nothing more).
      largeFileMBps: oneFile === null ? null : round(mbps(large.bytes, oneFile), 1),
      largeOverFile: ratio(oneFile, oursLarge),
      largeFileAgentCpuSeconds: oneFileCpu === null ? null : round(oneFileCpu, 2),
      noopSeconds: round(noop.ms / 1000, 3),
      noopAgentCpuSeconds: noop.cpu,
      rsyncNoopSeconds: rsyncNoop === null ? null : round(rsyncNoop / 1000, 3),
      // A time ratio: at most 1, the agents' re-sync is no slower than rsync's.
      noopOverRsync: rsyncNoop === null ? null : round(noop.ms / rsyncNoop, 3),
      sshNote: typeof sshd === 'string' ? sshd : undefined,
      agentPeakRssMiB: { a: round(peakRssMiB(a.pid), 1), b: round(peakRssMiB(b.pid), 1) },
      loadAverage: round(loadavg()[0])
    }
    const or = (x: unknown): string => x === null || x === undefined ? '-' : String(x)
    report(args.json, result, [
      `small tree: ${files} × ${fileSize} B in ${dirs} dirs; large tree: ${largeCount} × ${largeSize / MiB} MiB; checksum ${args.checksum}`,
      `agents, small        ${result.smallSeconds} s (agents' CPU ${or(result.smallAgentCpuSeconds)} s)   ${result.smallFilesPerSec} files/s   over scp -r ${or(result.smallOverScp)}   over rsync -a ${or(result.smallOverRsync)}`,
      `scp -r / rsync -a    ${or(result.scpSmallSeconds)} s / ${or(result.rsyncSmallSeconds)} s`,
      `agents, large        ${or(result.largeMBps)} MB/s (agents' CPU ${or(result.largeAgentCpuSeconds)} s)   rsync -a ${or(result.rsyncLargeMBps)} MB/s   over rsync ${or(result.largeOverRsync)}`,
      ...(oneFile === null ? [] : [`one file, same bytes ${result.largeFileMBps} MB/s (agents' CPU ${or(result.largeFileAgentCpuSeconds)} s)   tree over file ${or(result.largeOverFile)}`]),
      `no-op re-sync        ${result.noopSeconds} s   rsync ${or(result.rsyncNoopSeconds)} s   ratio ${or(result.noopOverRsync)} (≤ 1 is no slower)`,
      ...(result.sshNote !== undefined ? [`scp and rsync: ${result.sshNote}`] : []),
      `agent peak RSS       a ${result.agentPeakRssMiB.a} MiB, b ${result.agentPeakRssMiB.b} MiB`
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
