import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { COORDINATOR_OPTIONS, coordinatorConfig } from '../../cli/config-coordinator.ts'
import { AGENT_OPTIONS, agentConfig } from '../../cli/config-agent.ts'
import { runCli } from './helpers.ts'

const PEER = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const COORDINATOR = `/ip4/127.0.0.1/tcp/7701/p2p/${PEER}`

describe('configuration: flags > environment > file > defaults', () => {
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-config-'))
    await mkdir(join(dir, 'images'))
  })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  async function file (name: string, text: string): Promise<string> {
    const path = join(dir, name)
    await writeFile(path, text)
    return path
  }

  it('takes each coordinator option from the flag, else the environment, else the file, else its default', async () => {
    const config = await file('c.yaml', 'coordinator:\n  maxActive: 10\n  apiPort: 8800\n  dataDir: state\n')
    const env = { STACCATO_MAX_ACTIVE: '20', STACCATO_API_PORT: '9900' }
    const all = await coordinatorConfig({ config, maxActive: '30' }, env)
    expect(all.scheduler.maxActive).toBe(30)
    expect(all.apiPort).toBe(9900)
    expect((await coordinatorConfig({ config }, env)).scheduler.maxActive).toBe(20)
    const fromFile = await coordinatorConfig({ config }, {})
    expect(fromFile.scheduler.maxActive).toBe(10)
    expect(fromFile.apiPort).toBe(8800)
    // A relative path in a file is relative to that file.
    expect(fromFile.dataDir).toBe(join(dir, 'state'))
    const defaults = await coordinatorConfig({}, {})
    expect(defaults.scheduler.maxActive).toBe(64)
    expect(defaults.apiPort).toBe(7700)
    expect(defaults.listen).toEqual(['/ip4/127.0.0.1/tcp/7701'])
    // STACCATO_CONFIG names the file when --config does not.
    expect((await coordinatorConfig({}, { STACCATO_CONFIG: config })).scheduler.maxActive).toBe(10)
  })

  it('reads an agent from the file, with sizes, rates and volumes', async () => {
    const config = await file('a.yaml', [
      'agent:',
      '  name: store-1',
      `  coordinator: ${COORDINATOR}`,
      '  syncEvery: 4MiB',
      '  maxUploadRate: 100MiB',
      '  volumes:',
      '    - { name: images, root: ./images, readOnly: true }'
    ].join('\n'))
    const a = await agentConfig({ config }, {})
    expect(a.name).toBe('store-1')
    expect(a.syncEveryBytes).toBe(4 * 1024 * 1024)
    expect(a.maxUploadRate).toBe(100 * 1024 * 1024)
    expect(a.maxDownloadRate).toBeUndefined()
    expect(a.volumes).toEqual([{ name: 'images', root: join(dir, 'images'), readOnly: true }])
    // Flags replace the file's list, not add to it.
    const b = await agentConfig({ config, volume: [`scratch=${dir}`] }, { STACCATO_AGENT_NAME: 'store-2' })
    expect(b.volumes).toEqual([{ name: 'scratch', root: dir, readOnly: false }])
    expect(b.name).toBe('store-2')
  })

  it('stops with a message naming the option and where it came from', async () => {
    const missingRoot = await file('bad-volume.yaml', [
      'agent:',
      '  name: a1',
      `  coordinator: ${COORDINATOR}`,
      '  volumes:',
      `    - { name: ok, root: ${dir} }`,
      '    - { name: nope, root: /nope }'
    ].join('\n'))
    await expect(agentConfig({ config: missingRoot }, {})).rejects.toThrow('config: agent.volumes[1].root: /nope does not exist')
    await expect(coordinatorConfig({ maxActive: 'x' }, {})).rejects.toThrow("--max-active 'x' must be a whole number")
    await expect(coordinatorConfig({}, { STACCATO_API_PORT: '70000' })).rejects.toThrow("STACCATO_API_PORT '70000' must be a port number")
    await expect(coordinatorConfig({}, { STACCATO_LOG_LEVEL: 'loud' })).rejects.toThrow("STACCATO_LOG_LEVEL 'loud' must be one of trace")
    const typo = await file('typo.yaml', 'coordinator:\n  maxActiv: 3\n')
    await expect(coordinatorConfig({ config: typo }, {})).rejects.toThrow('config: coordinator.maxActiv: unknown option')
    const wrongType = await file('type.yaml', 'coordinator:\n  maxActive: lots\n')
    await expect(coordinatorConfig({ config: wrongType }, {})).rejects.toThrow('config: coordinator.maxActive: must be integer')
    const section = await file('section.yaml', 'coordinater: {}\n')
    await expect(coordinatorConfig({ config: section }, {})).rejects.toThrow("unknown section 'coordinater'")
    const broken = await file('broken.yaml', 'agent: [unclosed\n')
    await expect(agentConfig({ config: broken }, {})).rejects.toThrow(/is not valid YAML/)
    await expect(agentConfig({ config: join(dir, 'absent.yaml') }, {})).rejects.toThrow(/cannot read .*absent\.yaml: ENOENT/)
    await expect(agentConfig({ coordinator: COORDINATOR }, {})).rejects.toThrow(/a name is required/)
    await expect(agentConfig({ name: 'a1', coordinator: '/ip4/127.0.0.1/tcp/7701' }, {})).rejects.toThrow("--coordinator '/ip4/127.0.0.1/tcp/7701' must end in /p2p/")
    await expect(agentConfig({ name: 'a1', coordinator: COORDINATOR, volume: ['v=/nope'] }, {})).rejects.toThrow("--volume 'v=/nope': /nope does not exist")
    // A root that cannot be looked at is told with its reason, not as missing.
    await writeFile(join(dir, 'plain-file'), '')
    const through = join(dir, 'plain-file', 'vol')
    await expect(agentConfig({ name: 'a1', coordinator: COORDINATOR, volume: [`v=${through}`] }, {})).rejects.toThrow(`--volume 'v=${through}': ${through} cannot be read: ENOTDIR`)
  })

  it('takes the agent\'s default streams per transfer from flag, environment or file, 1 when unset, and refuses 0 or more than 16', async () => {
    expect((await agentConfig({ name: 'a1', coordinator: COORDINATOR }, {})).streams).toBe(1)
    expect((await agentConfig({ name: 'a1', coordinator: COORDINATOR, streams: '4' }, {})).streams).toBe(4)
    expect((await agentConfig({ name: 'a1', coordinator: COORDINATOR }, { STACCATO_STREAMS: '8' })).streams).toBe(8)
    const config = await file('streams.yaml', ['agent:', '  name: a1', `  coordinator: ${COORDINATOR}`, '  streams: 2'].join('\n'))
    expect((await agentConfig({ config }, {})).streams).toBe(2)
    await expect(agentConfig({ name: 'a1', coordinator: COORDINATOR, streams: '0' }, {})).rejects.toThrow("--streams '0' must be from 1 to 16")
    await expect(agentConfig({ name: 'a1', coordinator: COORDINATOR }, { STACCATO_STREAMS: '17' })).rejects.toThrow("STACCATO_STREAMS '17' must be from 1 to 16")
  })

  it('takes the large files a tree carries at once from flag or environment, 2 when unset, and refuses 0 or more than 16', async () => {
    expect((await agentConfig({ name: 'a1', coordinator: COORDINATOR }, {})).treeStreams).toBe(2)
    expect((await agentConfig({ name: 'a1', coordinator: COORDINATOR, treeStreams: '3' }, {})).treeStreams).toBe(3)
    expect((await agentConfig({ name: 'a1', coordinator: COORDINATOR }, { STACCATO_TREE_STREAMS: '1' })).treeStreams).toBe(1)
    await expect(agentConfig({ name: 'a1', coordinator: COORDINATOR, treeStreams: '17' }, {})).rejects.toThrow("--tree-streams '17' must be from 1 to 16")
  })

  it('takes direct I/O from flag, environment or file, auto when unset, and refuses anything but auto or off', async () => {
    expect((await agentConfig({ name: 'a1', coordinator: COORDINATOR }, {})).directIo).toBe('auto')
    expect((await agentConfig({ name: 'a1', coordinator: COORDINATOR, directIo: 'off' }, {})).directIo).toBe('off')
    expect((await agentConfig({ name: 'a1', coordinator: COORDINATOR }, { STACCATO_DIRECT_IO: 'off' })).directIo).toBe('off')
    const config = await file('direct-io.yaml', ['agent:', '  name: a1', `  coordinator: ${COORDINATOR}`, '  directIo: off'].join('\n'))
    expect((await agentConfig({ config }, {})).directIo).toBe('off')
    await expect(agentConfig({ name: 'a1', coordinator: COORDINATOR, directIo: 'on' }, {})).rejects.toThrow("--direct-io 'on' must be auto or off")
  })

  it('refuses to start an agent with a bad config file: one line, exit 2', async () => {
    const config = await file('start.yaml', `agent:\n  name: a1\n  coordinator: ${COORDINATOR}\n  volumes:\n    - { name: v, root: /nope }\n`)
    const r = await runCli(['agent', '--config', config])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('staccato: config: agent.volumes[0].root: /nope does not exist\n')
  })

  it('takes the store from --store, STACCATO_STORE or the file, LevelDB in the data directory by default, and refuses anything else', async () => {
    const config = await file('store.yaml', 'coordinator:\n  store: leveldb:/srv/staccato\n')
    expect((await coordinatorConfig({ config }, {})).store).toEqual({ kind: 'leveldb', dir: '/srv/staccato' })
    expect((await coordinatorConfig({ config }, { STACCATO_STORE: 'postgres://staccato@db.example/staccato' })).store).toEqual({ kind: 'postgres', url: 'postgres://staccato@db.example/staccato' })
    expect((await coordinatorConfig({ config, store: 'postgresql://u:secret@127.0.0.1:5432/s' }, {})).store).toEqual({ kind: 'postgres', url: 'postgresql://u:secret@127.0.0.1:5432/s' })
    expect((await coordinatorConfig({}, {})).store).toBeUndefined()
    const refused = coordinatorConfig({ store: 'mysql://u:secret@h/db' }, {})
    await expect(refused).rejects.toThrow(/--store: store: must be leveldb:<dir> or a postgres:/)
    await expect(refused).rejects.not.toThrow(/secret/)
  })

  it('documents every option, its flag and its environment variable in docs/configuration.md', async () => {
    const doc = await readFile(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
    for (const spec of [...COORDINATOR_OPTIONS, ...AGENT_OPTIONS]) {
      expect(doc, spec.key).toContain(`\`${spec.key}\``)
      expect(doc, spec.flag).toContain(`\`${spec.flag.split(' ')[0]}`)
      if (spec.env !== undefined) expect(doc, spec.env).toContain(`\`${spec.env}\``)
    }
  })
})
