/**
 * node scripts/bench-stream.ts [--size 1GiB] [--chunk 1MiB] [--reps 3] [--json]
 *
 * The mesh's data path alone between two processes: bytes from memory to a
 * counting reader, no agents, no hashing, no disk. `direct` is what agents ship
 * bulk data on (the direct data socket: X25519 keys agreed on a mesh stream,
 * then AES-256-GCM records on a plain TCP socket, mesh/direct-*.ts); in the
 * same run, the same bytes on one libp2p stream of tcp + @libp2p/plaintext +
 * yamux (no encryption: the ceiling of the libp2p stack), of the mesh's
 * secure channel + yamux (what control, swarm and tree streams use), and of
 * stock noise. On a shared machine compare CPU seconds per GB (both ends)
 * more than MB/s. With --json prints `{ encryptedMBps, plaintextMBps,
 * encryptedOverPlaintext, cpuSecondsPerGB, ... }` (medians; encrypted is the
 * direct data socket), with the channel and noise as further columns.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { plaintext } from '@libp2p/plaintext'
import { noise } from '@chainsafe/libp2p-noise'
import type { Libp2p, PrivateKey, Stream } from '@libp2p/interface'
import {
  DirectListener, FrameReader, RecordReader, RecordWriter, TYPE_END, connectDirect, createMeshNode, deriveKeys, ephemeral, meshMuxer, newSession,
  nodeNoiseCrypto, send, sendFrame
} from '../mesh/index.ts'
import { parseSize } from '../protocols/index.ts'
import { mbps, median, note, report, round } from './bench-util.ts'

// The agents' own V8 flags (cli/bin.ts), in both processes and for every mode: the bench measures the data path as agents run it.
setFlagsFromString('--semi-space-growth-factor=1')
setFlagsFromString('--heap-growing-percent=200')

const PROTOCOL = '/staccato/bench-stream/1'
// direct: the data socket agents ship bulk bytes on; encrypted: a stream of the
// mesh's secure channel; noise: the same with stock /noise (what the mesh uses
// with other peers); plaintext: no encryption at all.
type Mode = 'direct' | 'encrypted' | 'noise' | 'plaintext'
const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { size: { type: 'string', default: '1GiB' }, chunk: { type: 'string', default: '1MiB' }, reps: { type: 'string', default: '3' }, only: { type: 'string' }, json: { type: 'boolean', default: false } }
})

async function createNode (mode: Mode, privateKey: PrivateKey, listen: string[]): Promise<Libp2p> {
  if (mode === 'encrypted' || mode === 'direct') return await createMeshNode({ privateKey, listen })
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
    const { length, direct } = await reader.readFrame() as { length: number, direct?: { port: number, pub: string, session: string, server: string } }
    let bytes = 0
    if (direct === undefined) {
      for await (const chunk of reader.readBytes(length)) bytes += chunk.byteLength
    } else {
      // The reader's half of the data server's exchange (agent/data-server.ts, protocols/agent.ts).
      const own = ephemeral()
      await sendFrame(stream, { pub: own.pub })
      const keys = deriveKeys(own.privateKey, direct.pub, { serverPeer: direct.server, readerPeer: node.peerId.toString(), serverPub: direct.pub, readerPub: own.pub, session: Buffer.from(direct.session, 'base64url') })
      const records = new RecordReader(keys.toReader)
      await connectDirect('127.0.0.1', direct.port, keys, records)
      for await (const record of records.records()) {
        if (record.type !== TYPE_END) bytes += record.body.byteLength
      }
    }
    const used = process.cpuUsage(cpu)
    process.stdout.write(`${JSON.stringify({ bytes, ms: performance.now() - start, cpuSeconds: (used.user + used.system) / 1e6 })}\n`)
    await stream.close()
  })
  process.stdout.write(`${JSON.stringify({ addr: node.getMultiaddrs()[0].toString() })}\n`)
} else {
  const size = parseSize(args.size)
  const chunk = Buffer.alloc(parseSize(args.chunk), 7)
  // --only encrypted|noise|plaintext is for profiling one side; the ratios need both.
  const modes: Mode[] = args.only !== undefined ? [args.only as Mode] : ['direct', 'plaintext', 'encrypted', 'noise']
  const runs: Record<Mode, Array<{ mbps: number, cpuPerGB: number }>> = { direct: [], encrypted: [], noise: [], plaintext: [] }
  const lines: string[] = []
  for (const mode of modes) {
    const sink = await startSink(mode)
    const node = await createNode(mode, await generateKeyPair('Ed25519'), [])
    const encryption = (await node.dial(multiaddr(sink.addr))).encryption
    if (mode === 'encrypted') note(`secure channel: ${encryption ?? '?'}`)
    const listener = mode === 'direct' ? await DirectListener.open({ host: '127.0.0.1', port: 0 }) : undefined
    for (let rep = 0; rep < Number(args.reps); rep++) {
      const cpu = process.cpuUsage()
      const stream = await node.dialProtocol(multiaddr(sink.addr), PROTOCOL)
      if (listener === undefined) {
        await sendFrame(stream, { length: size })
        for (let left = size; left > 0; left -= chunk.length) await send(stream, left >= chunk.length ? chunk : chunk.subarray(0, left))
      } else {
        await sendDirect(node, listener, stream, multiaddr(sink.addr).getComponents().findLast(c => c.name === 'p2p')?.value ?? '', size, chunk)
      }
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
    await listener?.close()
    await node.stop()
    sink.child.kill()
  }
  const encryptedMBps = median(runs.direct.map(r => r.mbps))
  const plaintextMBps = median(runs.plaintext.map(r => r.mbps))
  const cpuSecondsPerGB = median(runs.direct.map(r => r.cpuPerGB))
  const plaintextCpuSecondsPerGB = median(runs.plaintext.map(r => r.cpuPerGB))
  report(args.json, {
    encryptedMBps: round(encryptedMBps, 0),
    plaintextMBps: round(plaintextMBps, 0),
    encryptedOverPlaintext: round(encryptedMBps / plaintextMBps),
    cpuSecondsPerGB: round(cpuSecondsPerGB),
    plaintextCpuSecondsPerGB: round(plaintextCpuSecondsPerGB),
    plaintextOverEncryptedCpu: round(plaintextCpuSecondsPerGB / cpuSecondsPerGB),
    channelMBps: round(median(runs.encrypted.map(r => r.mbps)), 0),
    channelCpuSecondsPerGB: round(median(runs.encrypted.map(r => r.cpuPerGB))),
    noiseMBps: round(median(runs.noise.map(r => r.mbps)), 0),
    noiseCpuSecondsPerGB: round(median(runs.noise.map(r => r.cpuPerGB)))
  }, [...lines, `direct/plaintext: ${round(encryptedMBps / plaintextMBps)} by MB/s, ${round(plaintextCpuSecondsPerGB / cpuSecondsPerGB)} by CPU-s per GB`])
}

/** The data server's half: offer a session on the stream, then seal the bytes onto the socket the sink presents it on. */
async function sendDirect (node: Libp2p, listener: DirectListener, stream: Stream, readerPeer: string, size: number, chunk: Buffer): Promise<void> {
  const own = ephemeral()
  const session = newSession()
  const reader = new FrameReader(stream)
  await sendFrame(stream, { length: size, direct: { port: listener.port, pub: own.pub, session: session.toString('base64url'), server: node.peerId.toString() } })
  const { pub } = await reader.readFrame() as { pub: string }
  const keys = deriveKeys(own.privateKey, pub, { serverPeer: node.peerId.toString(), readerPeer, serverPub: own.pub, readerPub: pub, session })
  const socket = await listener.expect(keys, AbortSignal.timeout(10_000))
  const writer = new RecordWriter(socket, keys.toReader)
  for (let left = size; left > 0; left -= chunk.length) await writer.data(left >= chunk.length ? chunk : chunk.subarray(0, left))
  await writer.end(new Uint8Array(0))
}
