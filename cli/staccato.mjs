#!/usr/bin/env node
// The `staccato` command (package.json "bin"). Plain JavaScript, so that any
// Node can read it: the code is TypeScript run by Node's type stripping, which
// needs Node >= 22.18. On an older Node this re-runs the command with the Node
// that `npm ci` pins in node_modules, or says in one line what is needed,
// instead of Node's ERR_UNKNOWN_FILE_EXTENSION stack trace.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import process from 'node:process'
import { URL, fileURLToPath } from 'node:url'

const NEEDED = [22, 18]
const [major, minor] = process.versions.node.split('.').map(Number)
const bin = fileURLToPath(new URL('./bin.ts', import.meta.url))

/** node_modules/node/bin/node in the package's folder or above it (npm may hoist it). */
function pinnedNode () {
  let dir = dirname(dirname(bin))
  for (let i = 0; i < 64; i++) {
    const candidate = join(dir, 'node_modules', 'node', 'bin', 'node')
    if (existsSync(candidate)) return candidate
    const parent = dirname(dir)
    if (parent === dir) return undefined
    dir = parent
  }
  return undefined
}

if (major > NEEDED[0] || (major === NEEDED[0] && minor >= NEEDED[1])) {
  await import('./bin.ts')
} else {
  const node = process.env.STACCATO_REEXEC === undefined ? pinnedNode() : undefined
  if (node === undefined) {
    process.stderr.write(`staccato: needs Node.js >= ${NEEDED.join('.')}, but this is Node ${process.version} (${process.execPath}); run \`npm ci\` in ${dirname(dirname(bin))} to get the pinned one, or install Node ${NEEDED.join('.')} or later\n`)
    process.exit(1)
  }
  // STACCATO_REEXEC: if the pinned Node were old too, say so rather than loop.
  const child = spawn(node, [bin, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, STACCATO_REEXEC: '1' } })
  const forward = signal => { child.kill(signal) }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, forward)
  child.once('error', err => {
    process.stderr.write(`staccato: cannot run ${node}: ${err.message}\n`)
    process.exit(1)
  })
  child.once('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1)
    // Die of the same signal, so that the caller sees what the command saw.
    process.removeAllListeners(signal)
    process.kill(process.pid, signal)
  })
}
