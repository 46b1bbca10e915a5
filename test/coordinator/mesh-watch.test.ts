import { afterEach, beforeEach, describe, it, expect } from 'vitest'
import { BUCKETS, BUCKET_MS, Throughput } from '../../coordinator/throughput.ts'
import { MeshWatch } from '../../coordinator/mesh-watch.ts'
import { tempApi } from './helpers.ts'

const SHA = 'ab'.repeat(32)

describe('throughput series', () => {
  it('adds bytes into 10 s buckets, newest last, and sums agents for the mesh', () => {
    let now = 1_000 * BUCKET_MS
    const t = new Throughput(() => now)
    t.add('a', 'rx', 100)
    t.add('a', 'rx', 50)
    t.add('b', 'tx', 7)
    now += BUCKET_MS
    t.add('a', 'rx', 1)
    const a = t.series('a')
    expect(a.rx).toHaveLength(BUCKETS)
    expect(a.rx.slice(-2)).toEqual([150, 1])
    expect(a.tx.every(v => v === 0)).toBe(true)
    const mesh = t.series()
    expect(mesh.rx.slice(-2)).toEqual([150, 1])
    expect(mesh.tx.slice(-2)).toEqual([7, 0])
    expect(Date.parse(mesh.to) - Date.parse(mesh.from)).toBe(BUCKETS * BUCKET_MS)
    expect(t.series('nobody').rx.every(v => v === 0)).toBe(true)
  })

  it('gives an agent\'s current rate over the last 30 s, the newest bucket counted as far as it has run', () => {
    let now = 2_000 * BUCKET_MS
    const t = new Throughput(() => now)
    t.add('a', 'rx', 4_000)
    now += BUCKET_MS
    t.add('a', 'tx', 1_000)
    now += BUCKET_MS / 2
    t.add('a', 'rx', 1_000)
    // Three buckets, the last half run: 25 s.
    expect(t.rate('a')).toEqual({ rx: 5_000 / 25, tx: 1_000 / 25 })
    now += 3 * BUCKET_MS
    expect(t.rate('a')).toEqual({ rx: 0, tx: 0 })
    expect(t.rate('nobody')).toEqual({ rx: 0, tx: 0 })
  })

  it('forgets what is older than the hour, and a slot reused for a newer bucket starts from zero', () => {
    let now = 5_000 * BUCKET_MS
    const t = new Throughput(() => now)
    t.add('a', 'rx', 10)
    now += (BUCKETS - 1) * BUCKET_MS
    expect(t.series('a').rx[0]).toBe(10)
    now += BUCKET_MS
    expect(t.series('a').rx.every(v => v === 0)).toBe(true)
    // The same slot, one hour later: the old 10 is not added to it.
    t.add('a', 'rx', 3)
    expect(t.series('a').rx.at(-1)).toBe(3)
    expect(t.series('a').rx.reduce((x, y) => x + y, 0)).toBe(3)
  })
})

describe('GET /v1/transfers/:id/swarm and GET /v1/throughput', () => {
  let h: Awaited<ReturnType<typeof tempApi>>
  let watch: MeshWatch
  beforeEach(async () => {
    h = await tempApi({ watch: store => { watch = new MeshWatch(store); return watch } })
  })
  afterEach(async () => { await h.cleanup() })

  it('shows each destination\'s pieces, the seed\'s upload and who served whom, from the agents\' stats', async () => {
    const { record } = await h.store.create({ source: 'agent://a/images/x.img', destinations: ['agent://b/images/x.img', 'agent://c/images/x.img'] }, { tenant: 'default' })
    await h.store.update(record.id, () => ({ manifest: { size: 3 << 20, mtime: 1, pieceSize: 1 << 20, sha256: SHA, pieces: [SHA, SHA, SHA] } }), `transfer.${record.id}.manifest`, {})
    // Pieces 0 and 2 at b: 1010 0000.
    watch.onSwarmStats('b', { distributionId: record.id, have: Buffer.from([0b1010_0000]).toString('base64'), served: [{ peerId: '12D3KooWc', bytes: 1 << 20 }] })
    watch.onSwarmStats('a', { distributionId: record.id, served: [{ peerId: '12D3KooWb', bytes: 2 << 20 }, { peerId: '12D3KooWc', bytes: 1 << 20 }] })
    // An agent outside the swarm is not listened to.
    watch.onSwarmStats('d', { distributionId: record.id, have: 'AA==', served: [{ peerId: '12D3KooWb', bytes: 5 }] })
    const res = await h.inject({ url: `/v1/transfers/${record.id}/swarm` })
    expect(res.statusCode, res.body).toBe(200)
    const body = res.json()
    expect(body).toMatchObject({ id: record.id, pieces: 3, size: 3 << 20, seed: 'a' })
    expect(body.participants.map((p: { agent: string, role: string, uploaded: number }) => [p.agent, p.role, p.uploaded])).toEqual([['a', 'seed', 3 << 20], ['b', 'destination', 1 << 20], ['c', 'destination', 0]])
    expect(body.participants[1].have).toBe('oA==')
    expect(body.participants[2].have).toBeUndefined()
    // Once c has succeeded it holds every piece (111x xxxx), whatever its last stats said.
    await h.store.update(record.id, rec => ({ destinations: rec.destinations?.map(d => d.agent === 'c' ? { ...d, state: 'succeeded' as const } : d) }), `transfer.${record.id}.destination`, {})
    expect((await h.inject({ url: `/v1/transfers/${record.id}/swarm` })).json().participants[2].have).toBe(Buffer.from([0b1110_0000]).toString('base64'))
    expect(body.served).toEqual(expect.arrayContaining([{ from: 'b', to: 'c', bytes: 1 << 20 }, { from: 'a', to: 'b', bytes: 2 << 20 }, { from: 'a', to: 'c', bytes: 1 << 20 }]))
    expect(body.served).toHaveLength(3)
    // Served bytes count as sent in the throughput, once: the same totals again add nothing.
    watch.onSwarmStats('a', { distributionId: record.id, served: [{ peerId: '12D3KooWb', bytes: 2 << 20 }, { peerId: '12D3KooWc', bytes: 1 << 20 }] })
    const a = await h.inject({ url: '/v1/throughput?agent=a' })
    expect(a.statusCode).toBe(200)
    expect(a.json().tx.reduce((x: number, y: number) => x + y, 0)).toBe(3 << 20)
    expect((await h.inject({ url: '/v1/throughput?agent=nobody' })).statusCode).toBe(404)
  })

  it('counts a copy\'s progress as sent by its source\'s agent and received by its destination\'s', async () => {
    const { record } = await h.store.create({ source: 'agent://a/images/x.img', destination: 'agent://b/images/x.img' }, { tenant: 'default' })
    await h.store.transition(record.id, 'scheduled', { executor: 'b', attempt: 1 })
    watch.onProgress('b', { transferId: record.id, attempt: 1, bytesDone: 1000 })
    watch.onProgress('b', { transferId: record.id, attempt: 1, bytesDone: 2500 })
    // Another agent's claim about it is not counted.
    watch.onProgress('c', { transferId: record.id, attempt: 1, bytesDone: 9999 })
    const mesh = (await h.inject({ url: '/v1/throughput' })).json()
    expect(mesh.rx.reduce((x: number, y: number) => x + y, 0)).toBe(2500)
    const sum = async (agent: string, dir: 'rx' | 'tx'): Promise<number> => ((await h.inject({ url: `/v1/throughput?agent=${agent}` })).json()[dir] as number[]).reduce((x, y) => x + y, 0)
    expect([await sum('a', 'tx'), await sum('a', 'rx'), await sum('b', 'rx'), await sum('b', 'tx')]).toEqual([2500, 0, 2500, 0])
    expect(mesh.bucketSeconds).toBe(10)
  })

  it('answers 400 for a plain transfer\'s swarm and 404 for another tenant\'s', async () => {
    const { record } = await h.store.create({ source: 'agent://a/images/x.img', destination: 'agent://b/images/x.img' }, { tenant: 'default' })
    expect((await h.inject({ url: `/v1/transfers/${record.id}/swarm` })).statusCode).toBe(400)
    const other = await h.store.create({ source: 'agent://a/images/x.img', destinations: ['agent://b/images/y.img', 'agent://c/images/y.img'] }, { tenant: 'other' })
    const reader = (await h.inject({ method: 'POST', url: '/v1/tokens', payload: { role: 'reader', tenant: 'default' } })).json().token
    expect((await h.inject({ url: `/v1/transfers/${other.record.id}/swarm`, token: reader })).statusCode).toBe(404)
    // Throughput is the admin's, as the agents list is.
    expect((await h.inject({ url: '/v1/throughput', token: reader })).statusCode).toBe(403)
  })
})
