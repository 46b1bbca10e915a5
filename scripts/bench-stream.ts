/**
 * node scripts/bench-stream.ts [--size 1GiB] [--chunk 1MiB]
 *
 * The mesh's transport alone (createMeshNode: tcp + noise + yamux) between two
 * processes: one stream, bytes from memory to a counting reader, no agents,
 * no hashing, no disk. Used to find where the data plane's time goes.
 */
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createMeshNode, FrameReader, send, sendFrame } from '../mesh/index.ts'
import { parseSize } from '../protocols/index.ts'
import { mbps, peakRssMiB, round } from './bench-util.ts'

const PROTOCOL = '/staccato/bench-stream/1'
const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { size: { type: 'string', default: '1GiB' }, chunk: { type: 'string', default: '1MiB' }, reps: { type: 'string', default: '3' } }
})

if (positionals[0] === 'sink') {
  // Exit through process.exit so that --cpu-prof writes its profile.
  process.on('SIGTERM', () => process.exit(0))
  const node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
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
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'sink'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const next = async (): Promise<Record<string, unknown>> => JSON.parse((await lines.next()).value as string) as Record<string, unknown>
  const { addr } = await next() as { addr: string }
  const node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
  for (let rep = 0; rep < Number(args.reps); rep++) {
    const cpu = process.cpuUsage()
    const stream = await node.dialProtocol(multiaddr(addr), PROTOCOL)
    await sendFrame(stream, { length: size })
    for (let left = size; left > 0; left -= chunk.length) await send(stream, left >= chunk.length ? chunk : chunk.subarray(0, left))
    const result = await next() as { bytes: number, ms: number, cpuSeconds: number }
    await stream.close()
    const used = process.cpuUsage(cpu)
    const mem = process.memoryUsage()
    process.stdout.write(`${round(mbps(result.bytes, result.ms), 0)} MB/s  sender ${round((used.user + used.system) / 1e6)} CPU-s, receiver ${round(result.cpuSeconds)} CPU-s, sender rss ${round(mem.rss / 2 ** 20, 0)} MiB (peak ${round(peakRssMiB(process.pid), 0)}), arrayBuffers ${round(mem.arrayBuffers / 2 ** 20, 0)} MiB\n`)
  }
  await node.stop()
  child.kill()
}
