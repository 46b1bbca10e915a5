import { mkdir, rm, stat } from 'node:fs/promises'
import { createWriteStream } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ChildProcess } from 'node:child_process'
import type { Command } from 'commander'
import { CliError } from '../client.ts'
import { takeDemoLock, watchParent } from '../demo-lock.ts'
import { spawnStaccato, stopProcess, waitForJson } from '../processes.ts'
import type { ReadyInfo } from './coordinator.ts'

const AGENTS = ['store-1', 'compute-1']
const SAMPLE = 'sample.bin'
// Big enough to watch progress move, small enough to create in a blink.
const SAMPLE_MIB = 256

export function demoCommand (program: Command): void {
  program.command('demo')
    .description('start a local mesh: a coordinator and two agents as separate processes, data under ./.staccato')
    .option('--dir <dir>', 'where the demo keeps everything', './.staccato')
    .option('--api-port <port>', 'REST port', '7700')
    .option('--mesh-port <port>', 'coordinator mesh port', '7701')
    .option('--sample-mib <n>', 'size of the sample file on store-1, in MiB', String(SAMPLE_MIB))
    .action(async (o: { dir: string, apiPort: string, meshPort: string, sampleMib: string }) => {
      const dir = resolve(o.dir)
      const sampleBytes = Number(o.sampleMib) * 1024 * 1024
      if (!Number.isSafeInteger(sampleBytes) || sampleBytes < 0) throw new CliError('usage', `--sample-mib '${o.sampleMib}' must be a whole number`, 2)
      await mkdir(join(dir, 'logs'), { recursive: true })
      const lock = await takeDemoLock(dir, line => process.stderr.write(`staccato demo: ${line}\n`))
      const children: ChildProcess[] = []
      let stopping = false
      const stopAll = async (code: number): Promise<never> => {
        if (stopping) return await new Promise<never>(() => {})
        stopping = true
        process.stderr.write('staccato demo: stopping\n')
        await Promise.all(children.map(async c => await stopProcess(c)))
        await lock.release()
        process.exit(code)
      }
      process.on('SIGINT', () => { void stopAll(0) })
      process.on('SIGTERM', () => { void stopAll(0) })
      process.on('SIGHUP', () => { void stopAll(0) })
      // `npm start` killed: npm does not pass its SIGTERM on, and SIGKILL cannot be passed on.
      watchParent(() => { void stopAll(0) })
      // Children watch us through a pipe, so they stop even if we are killed with SIGKILL.
      const start = (args: string[], log: string, env: NodeJS.ProcessEnv = {}): ChildProcess => {
        const child = spawnStaccato(args, log, env, { stopWithParent: true })
        children.push(child)
        lock.record(children.map(c => c.pid).filter(pid => pid !== undefined)).catch(err => { process.stderr.write(`staccato demo: cannot record its processes in the lock: ${String(err)}\n`) })
        return child
      }

      const readyFile = join(dir, 'coordinator', 'ready.json')
      await rm(readyFile, { force: true })
      const coordinator = start([
        'coordinator', '--data-dir', join(dir, 'coordinator'), '--api-port', o.apiPort,
        '--listen', `/ip4/127.0.0.1/tcp/${o.meshPort}`, '--ready-file', readyFile
      ], join(dir, 'logs', 'coordinator.log'))
      let ready: ReadyInfo
      try {
        ready = await waitForJson<ReadyInfo>(readyFile, coordinator, 30_000, 'the coordinator')
      } catch (err) {
        process.stderr.write(`staccato demo: ${(err as Error).message}; see ${join(dir, 'logs', 'coordinator.log')} (is port ${o.apiPort} or ${o.meshPort} in use? pass --api-port/--mesh-port)\n`)
        return await stopAll(1)
      }

      for (const name of AGENTS) {
        const volume = join(dir, 'volumes', name)
        await mkdir(volume, { recursive: true })
        // The join token through the environment: an argument would show in `ps`.
        const agent = start([
          'agent', '--name', name, '--coordinator', ready.multiaddrs[0],
          '--data-dir', join(dir, 'agents', name), '--volume', `data=${volume}`, '--listen', '/ip4/127.0.0.1/tcp/0'
        ], join(dir, 'logs', `${name}.log`), { STACCATO_JOIN_TOKEN: ready.joinToken })
        agent.on('exit', code => {
          if (!stopping) process.stderr.write(`staccato demo: agent ${name} exited (${code}); see ${join(dir, 'logs', `${name}.log`)}\n`)
        })
      }
      await makeSample(join(dir, 'volumes', AGENTS[0], SAMPLE), sampleBytes)
      await waitForAgents(ready, AGENTS)

      const auth = `-H 'Authorization: Bearer ${ready.apiToken}'`
      const body = JSON.stringify({ source: `agent://${AGENTS[0]}/data/${SAMPLE}`, destination: `agent://${AGENTS[1]}/data/${SAMPLE}` })
      process.stdout.write([
        '',
        'Staccato demo mesh is running.',
        `  REST API   ${ready.apiUrl}`,
        `  dashboard  ${ready.apiUrl}/ui (sign in with the API token)`,
        `  API token  ${ready.apiToken}`,
        `  mesh       ${ready.multiaddrs[0]}`,
        `  join token in ${join(dir, 'coordinator', 'join-token')} (another agent on this host: npx staccato agent --name NAME --coordinator ${ready.multiaddrs[0]} --join-token "$(cat ${join(dir, 'coordinator', 'join-token')})" --volume data=DIR --listen /ip4/127.0.0.1/tcp/0 --data-dir DIR2)`,
        `  agents     ${AGENTS.map(a => `${a} (volume data = ${join(dir, 'volumes', a)})`).join(', ')}`,
        `  logs       ${join(dir, 'logs')}`,
        '',
        `Copy ${SAMPLE} (${o.sampleMib} MiB) from ${AGENTS[0]} to ${AGENTS[1]}, agent to agent:`,
        `  curl -sS -X POST ${ready.apiUrl}/v1/transfers ${auth} -H 'Content-Type: application/json' -d '${body}'`,
        'Then follow it (use the id from the answer):',
        `  curl -sS ${ready.apiUrl}/v1/transfers/<id> ${auth}`,
        'Or the same with the command-line client, with a progress bar:',
        `  STACCATO_URL=${ready.apiUrl} STACCATO_TOKEN=${ready.apiToken} npx staccato transfer submit agent://${AGENTS[0]}/data/${SAMPLE} agent://${AGENTS[1]}/data/copy.bin --wait`,
        '',
        'Press Ctrl-C to stop everything.',
        ''
      ].join('\n'))
    })
}

async function makeSample (file: string, size: number): Promise<void> {
  // Absent (the first demo) or unreadable: either way it is written afresh below, which reports a real problem.
  const existing = await stat(file).catch(() => undefined)
  if (existing?.size === size) return
  const out = createWriteStream(file)
  for (let written = 0; written < size; written += 4 * 1024 * 1024) {
    if (!out.write(randomBytes(Math.min(4 * 1024 * 1024, size - written)))) await new Promise<void>(resolve => out.once('drain', () => resolve()))
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => { if (err != null) reject(err); else resolve() }))
}

async function waitForAgents (ready: ReadyInfo, names: string[]): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    // Not answering yet is what this loop waits out; the deadline below reports it if it lasts.
    const res = await fetch(`${ready.apiUrl}/v1/agents`, { headers: { authorization: `Bearer ${ready.apiToken}` } }).catch(() => undefined)
    if (res?.ok === true) {
      const body = await res.json() as { items?: Array<{ name: string, online: boolean }> } | Array<{ name: string, online: boolean }>
      const list = Array.isArray(body) ? body : body.items ?? []
      if (names.every(n => list.some(a => a.name === n && a.online))) return
    }
    await sleep(100)
  }
  process.stderr.write('staccato demo: agents did not register within 30 s; see the logs\n')
}

