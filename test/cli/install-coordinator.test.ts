import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFile } from 'node:child_process'
import { access, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { coordinatorConfig } from '../../cli/config-coordinator.ts'
import { parseUnit } from './helpers.ts'

const run = promisify(execFile)
const SCRIPT = fileURLToPath(new URL('../../scripts/install-coordinator.sh', import.meta.url))

describe('scripts/install-coordinator.sh', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'staccato-install-coordinator-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('renders a config file the coordinator accepts and a confined systemd unit, under --root only', async () => {
    const root = join(dir, 'root')
    const { stdout, stderr } = await run('bash', [SCRIPT, '--api-port', '7800', '--node', process.execPath, '--root', root])
    expect(stdout).toContain('wrote')
    expect(stderr).toBe('')
    const configFile = join(root, 'etc/staccato/coordinator.yaml')
    expect((await stat(configFile)).mode & 0o007).toBe(0)
    expect(await coordinatorConfig({ config: configFile })).toEqual(expect.objectContaining({
      dataDir: '/var/lib/staccato-coordinator', apiHost: '0.0.0.0', apiPort: 7800, listen: ['/ip4/0.0.0.0/tcp/7701']
    }))
    const unitFile = join(root, 'etc/systemd/system/staccato-coordinator.service')
    const unit = parseUnit(await readFile(unitFile, 'utf8'))
    const s = unit.Service
    expect(s.User).toEqual(['staccato'])
    expect(s.ExecStart[0]).toBe(`${process.execPath} ${fileURLToPath(new URL('../../cli/bin.ts', import.meta.url))} coordinator --config /etc/staccato/coordinator.yaml`)
    expect(s.ProtectSystem).toEqual(['strict'])
    expect(s.ReadWritePaths).toEqual(['/var/lib/staccato-coordinator'])
    for (const key of ['NoNewPrivileges', 'PrivateTmp', 'ProtectHome', 'PrivateDevices', 'RestrictSUIDSGID']) expect(s[key], key).toEqual(['yes'])
    expect(unit.Install.WantedBy).toEqual(['multi-user.target'])
    const analyze = await run('systemd-analyze', ['--version']).then(() => true, () => false)
    if (analyze) expect((await run('systemd-analyze', ['verify', unitFile])).stderr).toBe('')
    await expect(access('/etc/staccato/coordinator.yaml')).rejects.toThrow()
  })

  it('warns about a loopback mesh address, which agents on other hosts cannot reach', async () => {
    const { stderr } = await run('bash', [SCRIPT, '--listen', '/ip4/127.0.0.1/tcp/7701', '--node', process.execPath, '--dry-run'])
    expect(stderr).toBe("install-coordinator: warning: --listen '/ip4/127.0.0.1/tcp/7701' is a loopback address: agents on other hosts cannot reach it\n")
  })
})
