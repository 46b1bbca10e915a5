import { describe, expect, it } from 'vitest'
import { ImageHolders, chooseImageSeed, imageKey, withImageSeed } from '../../coordinator/image-seed.ts'

const agent = (name: string, online = true, plugins = ['agent', 'file', 'oci']): { name: string, online: boolean, plugins: string[] } => ({ name, online, plugins })

describe('image distribution seed choice', () => {
  it('takes the agent that seeded the image last when it is online, else the first other eligible agent by name', () => {
    const agents = [agent('r2'), agent('r1'), agent('off', false), agent('plain', true, ['agent', 'file']), agent('d1')]
    expect(chooseImageSeed(agents, ['d1'], 'r2')).toBe('r2')
    expect(chooseImageSeed(agents, ['d1'], 'off')).toBe('r1')
    expect(chooseImageSeed(agents, ['d1'])).toBe('r1')
    // A destination is never its own distribution's seed, even when it seeded the image before.
    expect(chooseImageSeed(agents, ['d1', 'r1'], 'r1')).toBe('r2')
    expect(() => chooseImageSeed([agent('d1'), agent('plain', true, ['file'])], ['d1'])).toThrow(/no online agent.*\?via=/)
  })

  it('names the seed in the source of an image distribution without ?via=, and leaves anything else alone', () => {
    const holders = new ImageHolders()
    holders.note('oci://reg.example/team/app:1?via=r2', 'r2')
    const agents = [agent('r1'), agent('r2'), agent('d1'), agent('d2')]
    const input = { source: 'oci://reg.example/team/app:1', destinations: ['agent://d1/vol/app/', 'agent://d2/vol/app/'] }
    expect(withImageSeed(input, agents, holders).source).toBe('oci://reg.example/team/app:1?via=r2')
    expect(withImageSeed({ ...input, source: 'oci://reg.example/team/other:1' }, agents, holders).source).toBe('oci://reg.example/team/other:1?via=r1')
    const given = { ...input, source: 'oci://reg.example/team/app:1?via=d9' }
    expect(withImageSeed(given, agents, holders)).toBe(given)
    const file = { source: 'oci://reg.example/team/app:1', destinations: ['agent://d1/vol/app.tar'] }
    expect(withImageSeed(file, agents, holders)).toBe(file)
    const copy = { source: 'oci://reg.example/team/app:1', destination: 'agent://d1/vol/app/' }
    expect(withImageSeed(copy, agents, holders)).toBe(copy)
  })

  it('remembers a bounded number of images, the oldest forgotten first, whatever agent the source names', () => {
    const holders = new ImageHolders(2)
    holders.note('oci://r/a:1?via=x', 'x')
    holders.note('oci://r/b:1', 'y')
    holders.note('oci://r/c:1', 'z')
    expect(holders.get('oci://r/a:1')).toBeUndefined()
    expect(holders.get('oci://r/b:1?via=q')).toBe('y')
    expect(imageKey('oci://r/c:1?platform=linux/arm64&via=q')).toBe('oci://r/c:1?platform=linux%2Farm64')
  })
})
