import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFile, spawnSync } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const LAUNCHER = join(ROOT, 'cli/staccato.mjs')
const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }

/** The machine's own Node when it is older than the code needs (Debian's is 20), else undefined. */
function oldNode (): string | undefined {
  const r = spawnSync('/usr/bin/node', ['-p', 'process.versions.node'], { encoding: 'utf8' })
  if (r.status !== 0) return undefined
  const [major, minor] = r.stdout.trim().split('.').map(Number)
  return major < 22 || (major === 22 && minor < 18) ? '/usr/bin/node' : undefined
}

interface Run { code: number | null, stdout: string, stderr: string }

async function run (file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return await new Promise(resolve => {
    execFile(file, args, { cwd: ROOT, env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr })
    })
  })
}

const OLD = oldNode()

describe('the staccato launcher (package.json bin)', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'staccato-launcher-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('prints the package version with --version', async () => {
    const r = await run(process.execPath, [LAUNCHER, '--version'])
    expect(r).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' })
  })

  it.skipIf(OLD === undefined)('runs on an older Node by re-running itself with the pinned one, exit codes kept', async () => {
    const r = await run(OLD as string, [LAUNCHER, '--version'])
    expect(r).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' })
    const bad = await run(OLD as string, [LAUNCHER, 'transfer', 'no-such-command'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).not.toMatch(/ERR_UNKNOWN_FILE_EXTENSION/)
  })

  it.skipIf(OLD === undefined)('says in one line which Node it needs when there is no pinned one (no npm ci yet)', async () => {
    await mkdir(join(dir, 'cli'))
    await copyFile(LAUNCHER, join(dir, 'cli/staccato.mjs'))
    const r = await run(OLD as string, [join(dir, 'cli/staccato.mjs'), '--version'])
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(/^staccato: needs Node\.js >= 22\.18, but this is Node v\d+\.\d+\.\d+ .*run `npm ci`.*\n$/)
    expect(r.stderr.split('\n').length).toBe(2)
  })

  it('is what `npx staccato` runs in a checkout, as the README says', async () => {
    const r = await run('npx', ['--no-install', 'staccato', '--version'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe(`${version}\n`)
  })
})
