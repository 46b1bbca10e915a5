import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../../mesh/index.ts'
import { loadPlugins, validatePlugin } from '../../protocols/index.ts'
import type { ProtocolPlugin } from '../../protocols/index.ts'
import { describeConformance } from './conformance.ts'
import { encodePath, sourceBytes } from './support.ts'

const repo = fileURLToPath(new URL('../..', import.meta.url))
const MEM = './test/fixtures/plugins/mem.ts'

async function put (plugin: ProtocolPlugin, url: URL, bytes: Uint8Array): Promise<void> {
  const w = await plugin.write(url, { offset: 0, key: 'seed' })
  await w.write(bytes)
  await w.commit()
}

describeConformance('third-party mem:// (loaded by specifier)', async () => {
  const [plugin] = await loadPlugins([MEM], repo)
  const url = (name: string): URL => new URL(`mem://store/${encodePath(name)}`)
  return {
    plugin,
    url,
    seed: async (name, size) => { await put(plugin, url(name), await sourceBytes(name, size)); return url(name) },
    mutate: async name => await put(plugin, url(name), Buffer.from('another version')),
    largeSize: 64 << 20,
    storesInMemory: true
  }
})

describe('loadPlugins', () => {
  it('calls a default-exported factory with the options given', async () => {
    const [p] = await loadPlugins([{ specifier: MEM, options: { scheme: 'mem2' } }], repo)
    expect(p.scheme).toBe('mem2')
  })

  it('takes a plug-in object exported as `plugin`, by absolute path too', async () => {
    const [p] = await loadPlugins([fileURLToPath(new URL('../fixtures/plugins/instance.ts', import.meta.url))], '/')
    expect(p.scheme).toBe('instance')
  })

  it('names the specifier of a module that cannot be loaded', async () => {
    await expect(loadPlugins(['./test/fixtures/plugins/nope.ts'], repo)).rejects.toThrow(/plug-in '.\/test\/fixtures\/plugins\/nope.ts' could not be loaded/)
  })

  it('refuses a module that exports no plug-in', async () => {
    await expect(loadPlugins(['./test/fixtures/plugins/no-plugin.ts'], repo)).rejects.toThrow(InvalidArgumentError)
  })

  it('refuses a plug-in of the wrong shape, naming each problem', async () => {
    const err: unknown = await loadPlugins(['./test/fixtures/plugins/bad-shape.ts'], repo).catch(e => e)
    if (!(err instanceof InvalidArgumentError)) throw new Error(`expected InvalidArgumentError, got ${String(err)}`)
    expect(err.message).toContain("plug-in './test/fixtures/plugins/bad-shape.ts' is not a valid protocol plug-in")
    expect(err.message).toContain('scheme must be a lower-case URL scheme')
    expect(err.message).toContain('capabilities.read must be a boolean')
    expect(err.message).toContain('read must be a function')
    expect(err.message).toContain('capabilities.list is true but list is not a function')
  })

  it('refuses a plug-in that claims writeAt without openWriterAt', async () => {
    const [mem] = await loadPlugins([MEM], repo)
    const { openWriterAt: _gone, ...without } = mem
    expect(() => validatePlugin(without, 'no-writer-at')).toThrow('capabilities.writeAt is true but openWriterAt is not a function')
  })

  it('resolves package and built-in module names (and validates what they export)', async () => {
    await expect(loadPlugins(['node:path'], repo)).rejects.toThrow(/plug-in 'node:path' is not a valid protocol plug-in/)
  })
})
