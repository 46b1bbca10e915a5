import { afterEach, beforeEach, describe, it, expect } from 'vitest'
import { agent, tempApi } from './helpers.ts'

/** The submission is refused with 400 invalid_argument and this message, and nothing is stored. */
async function expectRefused (h: Awaited<ReturnType<typeof tempApi>>, payload: object, message: RegExp): Promise<void> {
  const res = await h.inject({ method: 'POST', url: '/v1/transfers', payload })
  expect(res.statusCode).toBe(400)
  expect(res.json().code).toBe('invalid_argument')
  expect(res.json().message).toMatch(message)
  expect(h.store.size).toBe(0)
}

describe('REST API: a submission is checked against what the agents registered', () => {
  let h: Awaited<ReturnType<typeof tempApi>>
  beforeEach(async () => {
    h = await tempApi()
    // An offline agent keeps the volumes and schemes it registered with.
    await h.store.putAgent({ ...agent('d', false), volumes: [{ name: 'images', readOnly: false }, { name: 'archive', readOnly: true }], plugins: ['agent', 'random', 'null', 'http', 'https'] })
  })
  afterEach(async () => { await h.cleanup() })

  const refused: Array<[string, object, string]> = [
    ['an unknown source volume', { source: 'agent://a/imgs/x.img', destination: 'agent://b/images/x.img' },
      "source: agent 'a' has no volume 'imgs' (it has: images)"],
    ['an unknown destination volume on an offline agent', { source: 'agent://a/images/x.img', destination: 'agent://d/scratch/x.img' },
      "destination: agent 'd' has no volume 'scratch' (it has: images, archive (read-only))"],
    ['an unknown volume in a distribution', { source: 'agent://a/images/x.img', destinations: ['agent://b/images/x.img', 'agent://d/imags/x.img'] },
      "destinations[1]: agent 'd' has no volume 'imags' (it has: images, archive (read-only))"],
    ['a scheme typo, with the closest scheme', { source: 'htps://example.com/x.img', destination: 'agent://d/images/x.img' },
      "source: agent 'd', which runs this transfer, serves no 'htps' scheme (it serves: random, null, http, https); did you mean 'https'?"],
    ['a scheme the running agent lacks', { source: 'agent://a/images/x.img', destination: 'null://?via=a' },
      "destination: agent 'a', which runs this transfer, serves no 'null' scheme (it serves: file, random)"],
    ['a scheme no agent serves', { source: 'gopher://example.com/x', destination: 'null://' },
      "source: no agent serves 'gopher' (served: file, random, null, http, https)"],
    ['an unknown volume of a tree source', { source: 'agent://a/imgs/dataset/', destination: 'agent://d/images/copy/' },
      "source: agent 'a' has no volume 'imgs' (it has: images)"],
    ['an unknown volume of a tree destination', { source: 'agent://a/images/dataset/', destination: 'agent://d/scratch/copy/', deleteExtra: true },
      "destination: agent 'd' has no volume 'scratch' (it has: images, archive (read-only))"],
    ['a mirror of a single file', { source: 'agent://a/images/x.img', destination: 'agent://d/images/x.img', deleteExtra: true },
      'deleteExtra: applies to a tree; name the source directory with a trailing / (agent://a/images/x.img/)'],
    ['links of a single file', { source: 'agent://a/images/x.img', destination: 'agent://d/images/x.img', links: 'copy' },
      'links: applies to a tree; name the source directory with a trailing / (agent://a/images/x.img/)'],
    ['overwrite never with a sync level that replaces files', { source: 'agent://a/images/dataset/', destination: 'agent://d/images/copy/', overwrite: 'never', sync: 'checksum' },
      'overwrite: never keeps every file already at the destination, so sync checksum could replace none; leave sync out (or give sync: exists)'],
    ['an unknown links mode of a tree', { source: 'agent://a/images/dataset/', destination: 'agent://d/images/copy/', links: 'follow' },
      'body.links: must be one of skip, copy']
  ]
  for (const [what, payload, message] of refused) {
    it(`refuses ${what} with 400 naming the agent, the side and what exists`, async () => {
      const res = await h.inject({ method: 'POST', url: '/v1/transfers', payload })
      expect(res.json()).toEqual({ code: 'invalid_argument', message })
      expect(res.statusCode).toBe(400)
      expect(h.store.size).toBe(0)
    })
  }

  it('still refuses a read-only destination (403) and accepts an offline agent\'s real volume and scheme', async () => {
    const ro = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { source: 'agent://a/images/x.img', destination: 'agent://d/archive/x.img' } })
    expect(ro.statusCode).toBe(403)
    expect(ro.json().message).toBe('destination: volume archive of agent d is read-only')
    const tree = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { source: 'agent://a/images/dataset/', destination: 'agent://d/archive/copy/', deleteExtra: true } })
    expect(tree.statusCode).toBe(403)
    expect(tree.json().message).toBe('destination: volume archive of agent d is read-only')
    const ok = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { source: 'https://example.com/x.img', destination: 'agent://d/images/x.img' } })
    expect(ok.statusCode, ok.body).toBe(201)
    expect(ok.json().state).toBe('queued')
  })
})

describe('REST API: the checksum mode of a submission', () => {
  let h: Awaited<ReturnType<typeof tempApi>>
  beforeEach(async () => { h = await tempApi() })
  afterEach(async () => { await h.cleanup() })
  const route = { source: 'agent://a/images/x.img', destination: 'agent://b/images/x.img' }
  const pinned = { algorithm: 'sha256', value: 'ab'.repeat(32) }

  it('stores the mode asked for and shows it in the record', async () => {
    const res = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { ...route, checksumMode: 'blake3' } })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json().checksumMode).toBe('blake3')
    const got = await h.inject({ method: 'GET', url: `/v1/transfers/${res.json().id as string}` })
    expect(got.json().checksumMode).toBe('blake3')
    // No mode asked: sha256, as before, and nothing new in the record.
    const plain = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { ...route, checksum: pinned } })
    expect(plain.statusCode, plain.body).toBe(201)
    expect(plain.json().checksumMode).toBeUndefined()
  })

  it.each<[string, object, RegExp]>([
    ['an unknown mode', { checksumMode: 'md5' }, /^body.checksumMode: must be one of sha256, blake3, none$/],
    ['a pinned sha256 with another mode', { checksumMode: 'blake3', checksum: pinned }, /^checksumMode: a pinned checksum is a sha256, so it needs checksumMode sha256, not blake3$/],
    ['a fast mode for a distribution', { checksumMode: 'none', destination: undefined, destinations: ['agent://b/images/x.img', 'agent://c/images/x.img'] }, /^checksumMode: a distribution verifies every piece's sha256; none applies to one destination only$/]
  ])('refuses %s with 400 invalid_argument', async (_what, extra, message) => {
    await expectRefused(h, { ...route, ...extra }, message)
  })
})

describe('REST API: the streams of a submission', () => {
  let h: Awaited<ReturnType<typeof tempApi>>
  beforeEach(async () => { h = await tempApi() })
  afterEach(async () => { await h.cleanup() })
  const route = { source: 'agent://a/images/x.img', destination: 'agent://b/images/x.img' }

  it('stores the streams asked for, shows them, and a retry keeps them', async () => {
    const res = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { ...route, streams: 4 } })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json().streams).toBe(4)
    const id = res.json().id as string
    expect((await h.inject({ method: 'GET', url: `/v1/transfers/${id}` })).json().streams).toBe(4)
    await h.store.transition(id, 'failed')
    const again = await h.inject({ method: 'POST', url: `/v1/transfers/${id}/retry` })
    expect(again.statusCode, again.body).toBe(201)
    expect(again.json().streams).toBe(4)
    // None asked: nothing in the record, and the executing agent's default applies.
    const plain = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { ...route, destination: 'agent://b/images/y.img' } })
    expect(plain.json().streams).toBeUndefined()
  })

  it.each<[string, object, RegExp]>([
    ['zero streams', { streams: 0 }, /^body.streams: must be >= 1$/],
    ['more than 16 streams', { streams: 17 }, /^body.streams: must be <= 16$/],
    ['a fraction', { streams: 1.5 }, /^body.streams: must be integer$/],
    ['a string', { streams: '4' }, /^body.streams: must be integer$/],
    ['several streams for a distribution', { streams: 2, destination: undefined, destinations: ['agent://b/images/x.img', 'agent://c/images/x.img'] }, /^streams: a distribution fetches pieces from every peer at once; streams applies to one destination only$/],
    ['several streams for a tree', { streams: 4, source: 'agent://a/images/dir/', destination: 'agent://b/images/dir/' }, /^streams: a tree carries its files in batches of its own; streams applies to a single file only$/]
  ])('refuses %s with 400 invalid_argument', async (_what, extra, message) => {
    await expectRefused(h, { ...route, ...extra }, message)
  })
})

describe('REST API: a tree to several destinations (a tree distribution)', () => {
  let h: Awaited<ReturnType<typeof tempApi>>
  beforeEach(async () => { h = await tempApi() })
  afterEach(async () => { await h.cleanup() })
  const route = { source: 'agent://a/images/dataset/', destinations: ['agent://b/images/copy/', 'agent://c/images/copy/'] }

  it('is accepted as one distribution with each destination, keeping its globs', async () => {
    const res = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { ...route, exclude: ['*.tmp'] } })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json().destinations.map((d: { destination: string, state: string }) => [d.destination, d.state])).toEqual([['agent://b/images/copy/', 'queued'], ['agent://c/images/copy/', 'queued']])
    expect(res.json().tree).toEqual({ exclude: ['*.tmp'] })
  })

  it.each<[string, object, RegExp]>([
    ['a destination that is not a directory', { destinations: ['agent://b/images/copy/', 'agent://c/images/copy'] }, /^destinations\[1\]: the source is a directory \(it ends with \/\), so each destination must be one too: agent:\/\/c\/images\/copy\/$/],
    ['a sync level', { sync: 'size' }, /^sync: applies to a tree sent to one destination; a tree sent to several goes through the swarm whole/],
    ['a mirror', { deleteExtra: true }, /^deleteExtra: applies to a tree sent to one destination/],
    ['a dry run', { dryRun: true }, /^dryRun: applies to a tree sent to one destination/],
    ['links copied', { links: 'copy' }, /^links: copy applies to a tree sent to one destination; a tree sent to several goes through the swarm, which skips symbolic links$/]
  ])('refuses %s with 400 invalid_argument', async (_what, extra, message) => {
    await expectRefused(h, { ...route, ...extra }, message)
  })
})
