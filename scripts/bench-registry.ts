import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { accessSync, constants, openSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from '../cli/index.ts'
import { startedListening, stopDaemon } from './bench-daemon.ts'

const run = promisify(execFile)
const TOOLS = ['/usr/bin/docker-registry', '/usr/bin/skopeo', '/usr/bin/umoci']

/**
 * The benchmarks' registry: Debian's docker-registry on loopback with
 * filesystem storage and no auth, and images built with umoci and pushed
 * with skopeo (the tests' helper, test/helpers/registry.ts, does the same
 * with auth and faults; scripts may not import tests).
 */
export class BenchRegistry {
  readonly dir: string
  port = 0
  private child?: ChildProcess

  private constructor (dir: string) {
    this.dir = dir
  }

  static async start (): Promise<BenchRegistry> {
    const missing = TOOLS.filter(t => { try { accessSync(t, constants.X_OK); return false } catch { return true } })
    if (missing.length > 0) throw new Error(`the image benchmark needs ${missing.join(', ')} (apt-get install docker-registry skopeo umoci)`)
    const reg = new BenchRegistry(await mkdtemp(join(tmpdir(), 'staccato-bench-registry-')))
    reg.port = await freePort()
    await writeFile(join(reg.dir, 'config.yml'), `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${join(reg.dir, 'storage')}
http:
  addr: 127.0.0.1:${reg.port}
`)
    const fd = openSync(join(reg.dir, 'registry.log'), 'a')
    reg.child = spawn('/usr/bin/docker-registry', ['serve', join(reg.dir, 'config.yml')], { stdio: ['ignore', fd, fd] })
    if (await startedListening(reg.child, reg.port, 600)) return reg
    if (reg.child.exitCode !== null) throw new Error(`docker-registry exited: ${await readFile(join(reg.dir, 'registry.log'), 'utf8')}`)
    throw new Error('docker-registry did not start listening')
  }

  get host (): string {
    return `127.0.0.1:${this.port}`
  }

  /** The OCI layout an image was built in before it was pushed (tagged `built`). */
  layout (name: string): string {
    return join(this.dir, `layout-${name}`)
  }

  /** Builds an image of these layers (one file each) with umoci and pushes it as repo:tag; answers its blobs' total size. */
  async push (name: string, layers: Uint8Array[], repo: string, tag: string): Promise<number> {
    const layout = this.layout(name)
    await run('/usr/bin/umoci', ['init', '--layout', layout])
    await run('/usr/bin/umoci', ['new', '--image', `${layout}:built`])
    for (const [i, data] of layers.entries()) {
      const src = join(this.dir, `layer-${name}-${i}`)
      await mkdir(src, { recursive: true })
      await writeFile(join(src, 'data.bin'), data)
      await run('/usr/bin/umoci', ['insert', '--rootless', '--image', `${layout}:built`, src, `/layer${i}`])
      await rm(src, { recursive: true })
    }
    await run('/usr/bin/skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:built`, `docker://${this.host}/${repo}:${tag}`])
    const { stdout } = await run('/usr/bin/skopeo', ['inspect', '--raw', `oci:${layout}:built`])
    const m = JSON.parse(stdout) as { config: { size: number }, layers: Array<{ size: number }> }
    return m.config.size + m.layers.reduce((n, l) => n + l.size, 0)
  }

  async stop (): Promise<void> {
    await stopDaemon(this.child, this.dir, 'SIGKILL')
  }
}
