/**
 * node scripts/bench-stream.ts [--size 1GiB] [--chunk 1MiB] [--reps 3] [--json]
 *
 * The mesh's transport alone (createMeshNode: tcp + the shipped secure channel
 * + yamux) between two processes: one stream, bytes from memory to a counting
 * reader, no agents, no hashing, no disk. In the same run, alternating with it,
 * the same stack with @libp2p/plaintext instead of encryption: the ceiling of
 * this stack. On a shared machine compare CPU seconds per GB (both ends) more
 * than MB/s. With --json prints
 * `{ encryptedMBps, plaintextMBps, encryptedOverPlaintext, cpuSecondsPerGB, ... }` (medians),
 * with stock noise on the same stack as a third column.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { plaintext } from '@libp2p/plaintext'
import { noise } from '@chainsafe/libp2p-noise'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { createMeshNode, FrameReader, meshMuxer, nodeNoiseCrypto, send, sendFrame } from '../mesh/index.ts'
import { parseSize } from '../protocols/index.ts'
import { mbps, median, note, report, round } from './bench-util.ts'

const PROTOCOL = '/staccato/bench-stream/1'
// encrypted: the shipped stack; noise: the same with stock /noise (what the mesh
// used before and still uses with other peers); plaintext: no encryption at all.
type Mode = 'encrypted' | 'noise' | 'plaintext'
const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { size: { type: 'string', default: '1GiB' }, chunk: { type: 'string', default: '1MiB' }, reps: { type: 'string', default: '3' }, only: { type: 'string' }, json: { type: 'boolean', default: false } }
})

async function createNode (mode: Mode, privateKey: PrivateKey, listen: string[]): Promise<Libp2p> {
  if (mode === 'encrypted') return await createMeshNode({ privateKey, listen })
  const connectionEncrypters = mode === 'noise' ? [noise({ crypto: nodeNoiseCrypto })] : [plaintext()]
  return await createLibp2p({ privateKey, addresses: { listen }, transports: [tcp()], connectionEncrypters, streamMuxers: [meshMuxer()] })
}

interface Sink { child: ChildProcess, addr: string, next: () => Promise<Record<string, unknown>> }

async function startSink (mode: Mode): Promise<Sink> {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), 'sink', mode], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const next = async (): Promise<Record<string, unknown>> => JSON.parse((await lines.next()).value as string) as Record<string, unknown>
  const { addr } = await next() as { addr: string }
  return { child, addr, next }
}

if (positionals[0] === 'sink') {
  // Exit through process.exit so that --cpu-prof writes its profile.
  process.on('SIGTERM', () => process.exit(0))
  const node = await createNode(positionals[1] as Mode, await generateKeyPair('Ed25519'), ['/ip4/127.0.0.1/tcp/0'])
  await node.handle(PROTOCOL, async stream => {
    const start = performance.now()
    const cpu = process.cpuUsage()
    const reader = new FrameReader(stream)
    const { length } = await reader.readFrame() as { length: number }
    let bytes = 0
    for await (const chunk of reader.readBytes(length)) bytes += chunk.byteLength
    const used = process.cpuUsage(cpu)
    process.stdout.write(`${JSON.stringify({ bytes, ms: performance.now() - start, cpuSeconds: (used.user + used.system) / 1e6 })}\n`)
    await stream.close()
  })
  process.stdout.write(`${JSON.stringify({ addr: node.getMultiaddrs()[0].toString() })}\n`)
} else {
  const size = parseSize(args.size)
  const chunk = Buffer.alloc(parseSize(args.chunk), 7)
  // --only encrypted|noise|plaintext is for profiling one side; the ratios need both.
  const modes: Mode[] = args.only !== undefined ? [args.only as Mode] : ['encrypted', 'noise', 'plaintext']
  const runs: Record<Mode, Array<{ mbps: number, cpuPerGB: number }>> = { encrypted: [], noise: [], plaintext: [] }
  const lines: string[] = []
  for (const mode of modes) {
    const sink = await startSink(mode)
    const node = await createNode(mode, await generateKeyPair('Ed25519'), [])
    const encryption = (await node.dial(multiaddr(sink.addr))).encryption
    if (mode === 'encrypted') note(`encrypted transport: ${encryption ?? '?'}`)
    for (let rep = 0; rep < Number(args.reps); rep++) {
      const cpu = process.cpuUsage()
      const stream = await node.dialProtocol(multiaddr(sink.addr), PROTOCOL)
      await sendFrame(stream, { length: size })
      for (let left = size; left > 0; left -= chunk.length) await send(stream, left >= chunk.length ? chunk : chunk.subarray(0, left))
      const result = await sink.next() as { bytes: number, ms: number, cpuSeconds: number }
      await stream.close()
      const used = process.cpuUsage(cpu)
      const cpuSeconds = (used.user + used.system) / 1e6 + result.cpuSeconds
      const run = { mbps: mbps(result.bytes, result.ms), cpuPerGB: cpuSeconds / (result.bytes / 1e9) }
      runs[mode].push(run)
      const line = `${mode}: ${round(run.mbps, 0)} MB/s, ${round(run.cpuPerGB)} CPU-s per GB (sender + receiver)`
      lines.push(line)
      if (args.json) note(line)
    }
    await node.stop()
    sink.child.kill()
  }
  const encryptedMBps = median(runs.encrypted.map(r => r.mbps))
  const plaintextMBps = median(runs.plaintext.map(r => r.mbps))
  const cpuSecondsPerGB = median(runs.encrypted.map(r => r.cpuPerGB))
  const plaintextCpuSecondsPerGB = median(runs.plaintext.map(r => r.cpuPerGB))
  const noiseMBps = median(runs.noise.map(r => r.mbps))
  const noiseCpuSecondsPerGB = median(runs.noise.map(r => r.cpuPerGB))
  report(args.json, {
    encryptedMBps: round(encryptedMBps, 0),
    plaintextMBps: round(plaintextMBps, 0),
    encryptedOverPlaintext: round(encryptedMBps / plaintextMBps),
    cpuSecondsPerGB: round(cpuSecondsPerGB),
    plaintextCpuSecondsPerGB: round(plaintextCpuSecondsPerGB),
    plaintextOverEncryptedCpu: round(plaintextCpuSecondsPerGB / cpuSecondsPerGB),
    noiseMBps: round(noiseMBps, 0),
    noiseCpuSecondsPerGB: round(noiseCpuSecondsPerGB)
  }, [...lines, `encrypted/plaintext: ${round(encryptedMBps / plaintextMBps)} by MB/s, ${round(plaintextCpuSecondsPerGB / cpuSecondsPerGB)} by CPU-s per GB`])
}
