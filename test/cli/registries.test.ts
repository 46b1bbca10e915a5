import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadRegistries } from '../../cli/registries.ts'

describe('the registries file', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'staccato-registries-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  async function load (text: string): Promise<unknown> {
    const path = join(dir, 'registries.yml')
    await writeFile(path, text)
    return await loadRegistries(path)
  }

  it('reads settings per host, secrets from files beside it', async () => {
    await writeFile(join(dir, 'alice.pw'), 's3cret\n')
    await writeFile(join(dir, 'ci.token'), 'tok\n')
    expect(await load(`registries:
  registry.example:5000: { username: alice, passwordFile: ./alice.pw }
  ghcr.example: { tokenFile: ci.token }
  "127.0.0.1:5000": { insecure: true }
`)).toEqual({
      'registry.example:5000': { username: 'alice', password: 's3cret' },
      'ghcr.example': { token: 'tok' },
      '127.0.0.1:5000': { insecure: true }
    })
  })

  it('names the place of a mistake', async () => {
    await expect(load('registries: []')).rejects.toThrow(/a 'registries:' map/)
    await expect(load('registries:\n  r.example: { user: a }')).rejects.toThrow(/registries\.r\.example\.user: unknown setting/)
    await expect(load('registries:\n  r.example: { username: a }')).rejects.toThrow(/username and password go together/)
    await expect(load('registries:\n  r.example: { password: a, passwordFile: b }')).rejects.toThrow(/not both/)
    await expect(load('registries:\n  "http://r.example": {}')).rejects.toThrow(/not a host/)
    await expect(load('registries:\n  r.example: { tokenFile: ./missing }')).rejects.toThrow(/tokenFile: ENOENT/)
  })
})
