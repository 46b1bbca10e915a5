import { execFile, spawnSync } from 'node:child_process'
import { accessSync, constants, readdirSync } from 'node:fs'
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { freePort } from './processes.ts'

const run = promisify(execFile)

/*
 * A throw-away PostgreSQL cluster for tests and benchmarks (test/helpers/postgres.ts,
 * scripts/bench-api.ts); kept in cli/ with the other process helpers (processes.ts),
 * the one unit both may import.
 */

export interface Postgres {
  /** The cluster's maintenance database (`postgres`), as superuser `staccato`. */
  url: string
  /** A new empty database in the cluster; its URL. */
  freshDatabase (): Promise<string>
  /** SIGKILL of the server (the postmaster), then waits until it and its backends are gone: a crash, as for a power cut with fsync on. */
  kill (): Promise<void>
  /** Starts the server again on the same data directory and port (crash recovery replays the WAL). */
  restart (): Promise<void>
  /** The postmaster's pid (its backends are its children): for a benchmark's CPU accounting. */
  serverPid (): Promise<number>
  stop (): Promise<void>
}

/** Whether `path` is a file this process may run (the tests' helpers use this one too). */
export function executable (path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * Debian's server binaries: STACCATO_TEST_POSTGRES (a bin directory; empty
 * hides PostgreSQL, to try the suite as a machine without it), else the
 * newest /usr/lib/postgresql/<major>/bin. Debian keeps them off PATH.
 */
export function postgresBinDir (): string | undefined {
  const override = process.env.STACCATO_TEST_POSTGRES
  if (override !== undefined) return override !== '' && executable(join(override, 'initdb')) ? override : undefined
  let majors: string[]
  try {
    majors = readdirSync('/usr/lib/postgresql')
  } catch {
    return undefined
  }
  return majors.sort((a, b) => Number(b) - Number(a)).map(m => `/usr/lib/postgresql/${m}/bin`).find(d => executable(join(d, 'initdb')))
}

/**
 * Why PostgreSQL tests cannot run here, or undefined when they can. With
 * CI=true a missing server is a failure (.ci/run installs `postgresql`), so
 * callers throw it; otherwise they skip with it as the visible reason.
 */
export function postgresMissing (): string | undefined {
  if (postgresBinDir() !== undefined) return undefined
  return 'PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql, or set STACCATO_TEST_POSTGRES to a bin directory)'
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** initdb refuses to run as root: as root the cluster belongs to Debian's `postgres` user, and every server command runs through runuser. */
function asOwner (): { wrap: (bin: string, args: string[]) => [string, string[]], uid?: number, gid?: number } {
  if (process.getuid?.() !== 0) return { wrap: (bin, args) => [bin, args] }
  const id = (flag: string): number => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim())
  const uid = id('-u')
  if (!Number.isInteger(uid) || uid === 0) throw new Error('running as root and there is no postgres user to own the test cluster (Debian\'s postgresql package creates one)')
  return { wrap: (bin, args) => ['runuser', ['-u', 'postgres', '--', bin, ...args]], uid, gid: id('-g') }
}

/**
 * A private PostgreSQL cluster in a temporary directory, on a loopback port:
 * initdb, then pg_ctl start (fsync off unless `durable`); stop() runs pg_ctl stop and deletes it. If the
 * test process exits without stop(), the server is stopped on exit.
 */
export async function startPostgres (opts: { durable?: boolean } = {}): Promise<Postgres> {
  const missing = postgresMissing()
  if (missing !== undefined) throw new Error(missing)
  const bin = postgresBinDir() as string
  const owner = asOwner()
  const dir = await mkdtemp(join(tmpdir(), 'staccato-pg-'))
  if (owner.uid !== undefined) await chown(dir, owner.uid, owner.gid as number)
  const data = join(dir, 'data')
  const exec = async (name: string, args: string[]): Promise<void> => {
    const [file, argv] = owner.wrap(join(bin, name), args)
    await run(file, argv, { cwd: dir })
  }
  // --no-sync and fsync=off: the tests never crash the machine, only processes, and the cluster is thrown away.
  // A benchmark asks for `durable`: commits then wait for the disk, as the LevelDB store's sync writes do.
  await exec('initdb', ['-D', data, '-U', 'staccato', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C'])
  const log = join(dir, 'server.log')
  let port = 0
  let options = ''
  for (let attempt = 0; ; attempt++) {
    port = await freePort()
    options = `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} ${opts.durable === true ? '' : '-c fsync=off -c full_page_writes=off '}-c max_connections=50`
    try {
      await exec('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '60', '-o', options, 'start'])
      break
    } catch (err) {
      // Another process may have taken the port between freePort() and the server's bind.
      if (attempt < 3) continue
      const text = await readFile(log, 'utf8').catch(() => '')
      await rm(dir, { recursive: true, force: true })
      throw new Error(`PostgreSQL did not start: ${String(err)}\n${text}`, { cause: err })
    }
  }
  const stopNow = (): void => {
    const [file, argv] = owner.wrap(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop'])
    spawnSync(file, argv, { stdio: 'ignore' })
  }
  process.once('exit', stopNow)
  const url = `postgres://staccato@127.0.0.1:${port}/postgres`
  let databases = 0
  const serverPid = async (): Promise<number> => {
    const pid = Number((await readFile(join(data, 'postmaster.pid'), 'utf8')).split('\n')[0])
    if (!Number.isInteger(pid) || pid <= 0) throw new Error('no postmaster pid in postmaster.pid')
    return pid
  }
  return {
    url,
    serverPid,
    async freshDatabase () {
      const name = `t${++databases}`
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      try {
        await client.query(`CREATE DATABASE ${name}`)
      } finally {
        await client.end()
      }
      return `postgres://staccato@127.0.0.1:${port}/${name}`
    },
    async kill () {
      const pid = await serverPid()
      const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number)
      process.kill(pid, 'SIGKILL')
      // Backends leave on their own once they see the postmaster gone; a restart needs them gone (shared memory still attached). Bounded: 60 s.
      for (let i = 0; i < 600; i++) {
        if (![pid, ...children].some(alive)) return
        await new Promise(resolve => setTimeout(resolve, 100))
      }
      throw new Error('PostgreSQL processes still running 60 s after SIGKILL of the postmaster')
    },
    async restart () {
      await exec('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '60', '-o', options, 'start'])
    },
    async stop () {
      process.off('exit', stopNow)
      await exec('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(stopNow)
      await rm(dir, { recursive: true, force: true })
    }
  }
}
