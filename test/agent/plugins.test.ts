import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../../mesh/index.ts'
import { loadPlugins, nullSink, random } from '../../protocols/index.ts'
import { pluginsByScheme } from '../../agent/resolve.ts'

const repo = fileURLToPath(new URL('../..', import.meta.url))
const MEM = './test/fixtures/plugins/mem.ts'
const CLASH = './test/fixtures/plugins/https-clash.ts'

describe('an agent\'s plug-ins by scheme', () => {
  it('serves the built-in schemes and a third-party one side by side', async () => {
    const extra = await loadPlugins([MEM], repo)
    const byScheme = pluginsByScheme([random(), nullSink()], extra, [MEM])
    expect([...byScheme.keys()].sort()).toEqual(['mem', 'null', 'random'])
    expect(byScheme.get('mem')).toBe(extra[0])
  })

  it('refuses a plug-in that would replace a built-in, or shadow the volumes, naming it', async () => {
    const [clash] = await loadPlugins([CLASH], repo)
    const [agentScheme] = await loadPlugins([{ specifier: MEM, options: { scheme: 'agent' } }], repo)
    const builtIn = [random(), nullSink(), { ...random(), scheme: 'https' }]
    expect(() => pluginsByScheme(builtIn, [clash], [CLASH])).toThrow(InvalidArgumentError)
    expect(() => pluginsByScheme(builtIn, [clash], [CLASH])).toThrow(`plug-in '${CLASH}' serves scheme 'https', which the built-in plug-in already serves`)
    expect(() => pluginsByScheme(builtIn, [agentScheme], [MEM])).toThrow("serves scheme 'agent', which the agent's volume plug-in already serves")
  })

  it('refuses two third-party plug-ins for one scheme', async () => {
    const twice = await loadPlugins([MEM, MEM], repo)
    expect(() => pluginsByScheme([], twice, [MEM, './other.ts'])).toThrow(`plug-in './other.ts' serves scheme 'mem', which plug-in '${MEM}' already serves`)
  })

  it('keeps an agent from starting with a plug-in that clashes: exit 2 and one line saying why', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'staccato-clash-'))
    try {
      // The plug-ins load before the agent dials its coordinator, so no coordinator is needed here.
      const child = spawn(process.execPath, [join(repo, 'cli/bin.ts'), 'agent', '--name', 'clash',
        '--coordinator', '/ip4/127.0.0.1/tcp/9/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN', '--join-token', 'stj_unused',
        '--data-dir', join(dir, 'data'), '--volume', `vol=${dir}`, '--listen', '/ip4/127.0.0.1/tcp/0', '--plugin', CLASH], { cwd: repo })
      let stderr = ''
      child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
      const [code] = await once(child, 'exit') as [number]
      expect(code, stderr).toBe(2)
      expect(stderr).toContain(`staccato: plug-in '${CLASH}' serves scheme 'https', which the built-in plug-in already serves`)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
