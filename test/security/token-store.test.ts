import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { TokenStore, parseDuration } from '../../coordinator/tokens.ts'

describe('token store', () => {
  let dir: string
  let store: TokenStore

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-tokens-'))
    store = await TokenStore.open(dir)
  })
  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('lets exactly one of many agents racing with a single-use join token in, and remembers it across a restart', async () => {
    const { token, record } = await store.createJoinToken({ singleUse: true })
    const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => await store.useJoinToken(token, { agent: `racer-${i}`, peerId: `p${i}` })))
    expect(results.filter(r => r.ok)).toHaveLength(1)
    await store.close()
    store = await TokenStore.open(dir)
    expect((await store.useJoinToken(token, { agent: 'late', peerId: 'p' })).ok).toBe(false)
    expect(store.listJoinTokens().find(t => t.id === record.id)?.usedBy?.agent).toMatch(/^racer-\d+$/)
  })

  it('adds the bootstrap token once: revoked, it stays revoked when the coordinator starts again with the same file', async () => {
    await store.ensureBootstrap('stc_bootstrap')
    const [boot] = store.list()
    expect(store.authenticate('stc_bootstrap')).toMatchObject({ role: 'admin', tenant: '*' })
    await store.revoke(boot.id)
    await store.close()
    store = await TokenStore.open(dir)
    await store.ensureBootstrap('stc_bootstrap')
    expect(store.authenticate('stc_bootstrap')).toBeUndefined()
    expect(store.list()).toHaveLength(1)
  })

  it('keeps configured tokens in memory only, and will not revoke them through the API', async () => {
    const cfg = store.addConfigToken('from-the-command-line', { role: 'reader', tenant: 'a' })
    expect(store.authenticate('from-the-command-line')).toMatchObject({ role: 'reader', tenant: 'a' })
    await expect(store.revoke(cfg.id)).rejects.toMatchObject({ code: 'invalid_state' })
    await store.close()
    store = await TokenStore.open(dir)
    expect(store.authenticate('from-the-command-line')).toBeUndefined()
  })

  it('reads durations', () => {
    expect([parseDuration('90'), parseDuration('90s'), parseDuration('15m'), parseDuration('1h'), parseDuration('30d'), parseDuration(5)]).toEqual([90, 90, 900, 3600, 2592000, 5])
    for (const bad of ['', '1w', '-1', '0', '1.5h', '99999d']) expect(() => parseDuration(bad), bad).toThrow(/expiresIn/)
  })
})
