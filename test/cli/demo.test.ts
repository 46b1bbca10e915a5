import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { BIN, freePort } from '../../cli/processes.ts'

/** Alive and not a zombie waiting for its reaper. */
function running (pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z'
  } catch {
    return false
  }
}

async function until (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(100)) {
    if (await check()) return
  }
  throw new Error(`timed out waiting for ${what}`)
}

interface Demo { child: ChildProcess, out: () => string, err: () => string, exited: Promise<number | null> }

describe('staccato demo: its processes live and die with it', () => {
  let dir: string
  let ports: string[]
  const started: ChildProcess[] = []

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-demo-'))
    ports = [String(await freePort()), String(await freePort())]
  })
  afterEach(async () => {
    for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    // Whatever a failed case left: stop it by the lock's record rather than leak it.
    const lock = await readFile(join(dir, 'demo.lock'), 'utf8').then(t => JSON.parse(t) as { children: number[] }, () => undefined)
    for (const pid of lock?.children ?? []) if (running(pid)) process.kill(pid, 'SIGKILL')
    await rm(dir, { recursive: true, force: true })
  })

  function start (command: string, args: string[]): Demo {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    started.push(child)
    let out = ''
    let err = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d })
    const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
    return { child, out: () => out, err: () => err, exited }
  }

  const demoArgs = (): string[] => ['demo', '--dir', dir, '--api-port', ports[0], '--mesh-port', ports[1], '--sample-mib', '1']

  async function startDemo (): Promise<Demo & { children: number[] }> {
    const d = start(process.execPath, [BIN, ...demoArgs()])
    await until('the demo to be running', () => d.out().includes('Staccato demo mesh is running.') || d.child.exitCode !== null)
    expect(d.out(), d.err()).toContain('Staccato demo mesh is running.')
    const apiToken = /API token {2}(\S+)/.exec(d.out())?.[1] as string
    expect(d.out()).toContain(`dashboard  http://127.0.0.1:${ports[0]}/ui#token=${encodeURIComponent(apiToken)} (opens signed in with the API token)`)
    return { ...d, children: await children() }
  }

  async function children (): Promise<number[]> {
    const lock = JSON.parse(await readFile(join(dir, 'demo.lock'), 'utf8')) as { pid: number, children: number[] }
    expect(lock.children.length).toBe(3)
    expect(lock.children.every(running)).toBe(true)
    return lock.children
  }

  it('stops its coordinator and agents when killed with SIGKILL, and starts again over the stale lock', async () => {
    const first = await startDemo()
    first.child.kill('SIGKILL')
    await first.exited
    await until('the first demo\'s processes to stop', () => !first.children.some(running))

    const second = await startDemo()
    expect(second.err()).toMatch(new RegExp(`cleared the stale lock of a demo \\(pid ${first.child.pid}\\) that had died`))
    // The join token is not on any command line (ps shows those to every user).
    const token = (await readFile(join(dir, 'coordinator', 'join-token'), 'utf8')).trim()
    for (const pid of second.children) expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).not.toContain(token)

    second.child.kill('SIGTERM')
    expect(await second.exited).toBe(0)
    expect(second.children.some(running)).toBe(false)
    await expect(readFile(join(dir, 'demo.lock'))).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('refuses a second demo on the same directory while the first runs', async () => {
    const first = await startDemo()
    const again = start(process.execPath, [BIN, ...demoArgs()])
    expect(await again.exited).toBe(1)
    expect(again.err()).toBe(`staccato: a demo (pid ${first.child.pid}) is already running with ${dir}: stop it (kill ${first.child.pid}) or pass --dir\n`)
    first.child.kill('SIGTERM')
    expect(await first.exited).toBe(0)
  })

  it('stops what a dead demo left running (its pids in the lock) before starting', async () => {
    // A process the dead demo had started: its command line names the demo's directory, as theirs do.
    await mkdir(join(dir, 'agents'), { recursive: true })
    const leftover = start(process.execPath, ['-e', 'setInterval(() => {}, 1000)', join(dir, 'agents', 'store-1')])
    await until('the leftover to run', () => leftover.child.pid !== undefined && running(leftover.child.pid))
    const dead = start(process.execPath, ['-e', ''])
    await dead.exited
    await writeFile(join(dir, 'demo.lock'), JSON.stringify({ pid: dead.child.pid, children: [leftover.child.pid] }))
    const demo = await startDemo()
    expect(demo.err()).toContain('and stopped the 1 process(es) it left running')
    expect(await leftover.exited).toBeNull()
    demo.child.kill('SIGTERM')
    expect(await demo.exited).toBe(0)
  })

  it('stops with `npm start` when npm gets SIGTERM', async () => {
    const npm = start('npm', ['start', '--', ...demoArgs().slice(1)])
    await until('the demo to be running', () => npm.out().includes('Staccato demo mesh is running.') || npm.child.exitCode !== null)
    const pids = await children()
    const demoPid = (JSON.parse(await readFile(join(dir, 'demo.lock'), 'utf8')) as { pid: number }).pid
    npm.child.kill('SIGTERM')
    await until('the demo and its processes to stop', () => ![demoPid, ...pids].some(running))
    await expect(readFile(join(dir, 'demo.lock'))).rejects.toMatchObject({ code: 'ENOENT' })
  })
})
