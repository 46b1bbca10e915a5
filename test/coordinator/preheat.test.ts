import { describe, expect, it } from 'vitest'
import { agentsLabelled, preheatInput } from '../../coordinator/preheat.ts'

const agents: Record<string, { volumes: Array<{ name: string, readOnly: boolean }> }> = {
  a: { volumes: [{ name: 'ro', readOnly: true }, { name: 'data', readOnly: false }] },
  b: { volumes: [{ name: 'vol', readOnly: false }] },
  c: { volumes: [{ name: 'ro', readOnly: true }] }
}
const agentOf = (name: string): { volumes: Array<{ name: string, readOnly: boolean }> } | undefined => agents[name]

describe('preheat as a distribution', () => {
  it('names one layout per agent in its first writable volume, seeded by the first agent, which keeps the blobs it seeds', () => {
    const input = preheatInput({ image: 'oci://reg.example:5000/team/app:1.4', agents: ['b', 'a', 'b'] }, agentOf)
    expect(input.source).toBe('oci://reg.example:5000/team/app:1.4?via=b')
    expect(input.destinations).toEqual(['agent://a/data/preheat/reg.example_5000/team/app/'])
    expect(preheatInput({ image: 'oci://reg.example:5000/team/app:1.4', agents: ['a', 'b'], via: 'c' }, agentOf).destinations)
      .toEqual(['agent://a/data/preheat/reg.example_5000/team/app/', 'agent://b/vol/preheat/reg.example_5000/team/app/'])
    expect(input.labels).toEqual({ 'staccato.preheat': 'true' })
  })

  it('keeps a digest reference and a platform, and takes the seed and volume asked for', () => {
    const digest = `sha256:${'b'.repeat(64)}`
    const input = preheatInput({ image: `oci://reg/app@${digest}?platform=linux/arm64`, agents: ['b'], via: 'a', volume: 'vol' }, agentOf)
    expect(input.source).toBe(`oci://reg/app@${digest}?platform=linux%2Farm64&via=a`)
    expect(input.destinations).toEqual(['agent://b/vol/preheat/reg/app/'])
  })

  it('refuses what cannot be preheated', () => {
    expect(() => preheatInput({ image: 'https://reg/app:1', agents: ['a'] }, agentOf)).toThrow(/oci:\/\//)
    expect(() => preheatInput({ image: 'oci://reg/app:1', agents: [] }, agentOf)).toThrow(/at least one/)
    expect(() => preheatInput({ image: 'oci://reg/app:1', agents: ['c'], via: 'a' }, agentOf)).toThrow(/no writable volume/)
    expect(() => preheatInput({ image: 'oci://reg/app:1', agents: ['a'] }, agentOf)).toThrow(/reads the registry itself/)
  })

  it('selects by labels the agents that hold every pair, by name, and refuses an empty selector', () => {
    const labelled: Array<{ name: string, labels?: Record<string, string> }> = [
      { name: 'z1', labels: { zone: 'eu', tier: 'gpu' } },
      { name: 'a1', labels: { zone: 'eu' } },
      { name: 'b1', labels: { zone: 'us', tier: 'gpu' } },
      { name: 'n1' }
    ]
    expect(agentsLabelled(labelled, { zone: 'eu' })).toEqual(['a1', 'z1'])
    expect(agentsLabelled(labelled, { zone: 'eu', tier: 'gpu' })).toEqual(['z1'])
    expect(agentsLabelled(labelled, { tier: 'cpu' })).toEqual([])
    // An inherited key is not a label.
    expect(agentsLabelled(labelled, { constructor: 'x' })).toEqual([])
    expect(() => agentsLabelled(labelled, {})).toThrow(/at least one/)
  })
})
