import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFile } from 'node:child_process'
import { access, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { agentConfig } from '../../cli/config-agent.ts'
import { parseUnit } from './helpers.ts'

const run = promisify(execFile)
const SCRIPT = fileURLToPath(new URL('../../scripts/install-agent.sh', import.meta.url))
const COORDINATOR = '/ip4/10.0.0.5/tcp/7701/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

async function hasSystemdAnalyze (): Promise<boolean> {
  return await run('systemd-analyze', ['--version']).then(() => true, () => false)
}

describe('scripts/install-agent.sh', () => {
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-install-'))
    await mkdir(join(dir, 'images'))
    await mkdir(join(dir, 'scratch'))
  })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  const args = (root: string): string[] => [
    SCRIPT, '--name', 'store-1', '--coordinator', COORDINATOR, '--join-token', 'stc_secret',
    '--volume', `images=${join(dir, 'images')}:ro`, '--volume', `scratch=${join(dir, 'scratch')}`,
    '--node', process.execPath, '--root', root
  ]

  it('renders a config file the agent accepts and a confined systemd unit, under --root only', async () => {
    const root = join(dir, 'root')
    const { stdout } = await run('bash', args(root))
    expect(stdout).toContain('wrote')

    const configFile = join(root, 'etc/staccato/agent.yaml')
    // It holds the join token: not readable by others.
    expect((await stat(configFile)).mode & 0o007).toBe(0)
    const config = await agentConfig({ config: configFile }, {})
    expect(config).toEqual(expect.objectContaining({
      name: 'store-1', coordinator: COORDINATOR, joinToken: 'stc_secret', dataDir: '/var/lib/staccato', statusPort: 7703, metricsPort: 7704
    }))
    expect(config.volumes).toEqual([
      { name: 'images', root: join(dir, 'images'), readOnly: true },
      { name: 'scratch', root: join(dir, 'scratch'), readOnly: false }
    ])

    const unitFile = join(root, 'etc/systemd/system/staccato-agent.service')
    const unit = parseUnit(await readFile(unitFile, 'utf8'))
    const s = unit.Service
    expect(s.User).toEqual(['staccato'])
    expect(s.ExecStart[0]).toBe(`${process.execPath} ${fileURLToPath(new URL('../../cli/bin.ts', import.meta.url))} agent --config /etc/staccato/agent.yaml`)
    expect(s.ProtectSystem).toEqual(['strict'])
    expect(s.ReadWritePaths[0].split(' ')).toEqual(['/var/lib/staccato', join(dir, 'scratch')])
    expect(s.ReadOnlyPaths[0].split(' ')).toEqual([join(dir, 'images')])
    for (const key of ['NoNewPrivileges', 'PrivateTmp', 'ProtectHome', 'PrivateDevices', 'RestrictSUIDSGID']) expect(s[key], key).toEqual(['yes'])
    expect(s.CapabilityBoundingSet).toEqual([''])
    expect(unit.Install.WantedBy).toEqual(['multi-user.target'])

    if (await hasSystemdAnalyze()) {
      // verify exits 0 on unknown keys and bad values but says so on stderr.
      const { stderr } = await run('systemd-analyze', ['verify', unitFile])
      expect(stderr).toBe('')
    }
    // Nothing outside --root was touched.
    await expect(access('/etc/staccato/agent.yaml')).rejects.toThrow()
  })

  it('warns when the coordinator address is a loopback one, which other hosts cannot use', async () => {
    const loopback = COORDINATOR.replace('/ip4/10.0.0.5/', '/ip4/127.0.0.1/')
    const warned = await run('bash', [...args(join(dir, 'root-lo')), '--coordinator', loopback])
    expect(warned.stderr).toBe(`install-agent: warning: --coordinator '${loopback}' is a loopback address: only an agent on the coordinator's own host can reach it; use one of the other addresses the coordinator prints at start-up\n`)
    const quiet = await run('bash', args(join(dir, 'root-quiet')))
    expect(quiet.stderr).toBe('')
  })

  it('prints the files with --dry-run and writes nothing', async () => {
    const root = join(dir, 'dry')
    const { stdout } = await run('bash', [...args(root), '--dry-run'])
    expect(stdout).toContain('ProtectSystem=strict')
    expect(stdout).toContain("joinToken: 'stc_secret'")
    await expect(access(root)).rejects.toThrow()
  })

  it('refuses a volume that does not exist, naming it', async () => {
    const err = await run('bash', [SCRIPT, '--name', 'a1', '--coordinator', COORDINATOR, '--volume', 'v=/nope', '--node', process.execPath, '--root', join(dir, 'x')])
      .then(() => undefined, (e: { code: number, stderr: string }) => e)
    expect(err?.code).toBe(2)
    expect(err?.stderr).toBe("install-agent: --volume 'v=/nope': /nope is not a directory\n")
  })
})
