/**
 * One end of the raw-TCP reference measurement: `sink` listens on loopback,
 * prints its port, counts the bytes of one connection and prints the result;
 * `source <port> <bytes>` sends that many bytes from memory. Plain node:net,
 * no framing, no encryption: the floor any data plane on this machine pays.
 */
import { createServer, connect } from 'node:net'
import { performance } from 'node:perf_hooks'

// Large writes keep the per-call overhead out of the reference, as the data plane uses 1 MiB reads.
const CHUNK = 1 << 20

const [mode, ...args] = process.argv.slice(2)

if (mode === 'sink') {
  const server = createServer(socket => {
    const start = performance.now()
    const cpu = process.cpuUsage()
    let bytes = 0
    socket.on('data', chunk => { bytes += chunk.length })
    socket.on('end', () => {
      const ms = performance.now() - start
      const used = process.cpuUsage(cpu)
      process.stdout.write(`${JSON.stringify({ bytes, ms, cpuSeconds: (used.user + used.system) / 1e6 })}\n`)
      server.close()
    })
  })
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address()
    process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 })}\n`)
  })
} else if (mode === 'source') {
  const port = Number(args[0])
  let left = Number(args[1])
  const buffer = Buffer.alloc(CHUNK, 7)
  const socket = connect(port, '127.0.0.1', () => {
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(CHUNK, left)
        left -= n
        if (!socket.write(n === CHUNK ? buffer : buffer.subarray(0, n))) {
          socket.once('drain', pump)
          return
        }
      }
      socket.end()
    }
    pump()
  })
} else {
  process.stderr.write('usage: bench-tcp-peer.ts sink | source <port> <bytes>\n')
  process.exit(2)
}
