import { afterEach, beforeEach, describe, it, expect } from 'vitest'
import type { TransferRecord } from '../../coordinator/model.ts'
import { tempApi, transferInput } from './helpers.ts'

const ab = transferInput('a', 'b')
const UNKNOWN_ID = 'tr_00000000000000000000000000'

describe('REST API: transfers', () => {
  let h: Awaited<ReturnType<typeof tempApi>>
  const canceled: TransferRecord[] = []
  beforeEach(async () => {
    canceled.length = 0
    h = await tempApi({ onCancel: rec => canceled.push(rec) })
  })
  afterEach(async () => { await h.cleanup() })

  async function create (body: object, headers: Record<string, string> = {}): Promise<TransferRecord> {
    const res = await h.inject({ method: 'POST', url: '/v1/transfers', payload: body, headers })
    expect(res.statusCode, res.body).toBe(201)
    return res.json()
  }

  describe('POST /v1/transfers', () => {
    it('answers 201 with the stored record and its location', async () => {
      const res = await h.inject({
        method: 'POST',
        url: '/v1/transfers',
        payload: { ...ab, priority: 5, retries: 1, labels: { team: 'red' }, checksum: { algorithm: 'sha256', value: 'AB'.repeat(32) } }
      })
      expect(res.statusCode).toBe(201)
      const body = res.json()
      expect(body).toMatchObject({
        ...ab,
        state: 'queued',
        tenant: 'default',
        priority: 5,
        retries: 1,
        labels: { team: 'red' },
        agents: ['a', 'b'],
        attempt: 0,
        checksum: { algorithm: 'sha256', value: 'ab'.repeat(32) },
        progress: { bytesDone: 0, rate: 0 }
      })
      expect(res.headers.location).toBe(`/v1/transfers/${body.id}`)
      expect(h.store.get(body.id)).toEqual(body)
    })

    const bad: Array<[string, object, RegExp]> = [
      ['a source that is not a URL', { ...ab, source: 'not a url' }, /^source: /],
      ['an agent URL without a path', { ...ab, destination: 'agent://b' }, /^destination: /],
      ['an unknown field', { ...ab, colour: 'blue' }, /unknown field 'colour'/],
      ['an unknown checksum field', { ...ab, checksum: { algorithm: 'sha256', value: 'a'.repeat(64), x: 1 } }, /body\.checksum: unknown field 'x'/],
      ['a checksum that is not 64 hex digits', { ...ab, checksum: { algorithm: 'sha256', value: 'abc' } }, /body\.checksum\.value/],
      ['another checksum algorithm', { ...ab, checksum: { algorithm: 'md5', value: 'a'.repeat(64) } }, /body\.checksum\.algorithm: must be sha256/],
      ['a priority out of range', { ...ab, priority: 1001 }, /body\.priority/],
      ['a priority sent as a string', { ...ab, priority: '5' }, /body\.priority: must be integer/],
      ['fractional retries', { ...ab, retries: 1.5 }, /body\.retries/],
      ['a bad label key', { ...ab, labels: { 'has space': 'x' } }, /body\.labels: unknown field 'has space'/],
      ['a missing source', { destination: ab.destination }, /body\.source: is required/],
      ['source equal to destination', { source: ab.source, destination: ab.source }, /destination: must differ from source/]
    ]
    for (const [what, payload, message] of bad) {
      it(`answers 400 naming the field for ${what}`, async () => {
        const res = await h.inject({ method: 'POST', url: '/v1/transfers', payload })
        expect(res.statusCode).toBe(400)
        expect(res.json()).toMatchObject({ code: 'invalid_argument' })
        expect(res.json().message).toMatch(message)
        expect(h.store.size).toBe(0)
      })
    }

    it('answers 400 for a body that is not JSON and 413 for one over 1 MiB', async () => {
      const json = { 'content-type': 'application/json' }
      const broken = await h.inject({ method: 'POST', url: '/v1/transfers', headers: json, payload: '{"source":' })
      expect(broken.statusCode).toBe(400)
      expect(broken.json().code).toBe('invalid_argument')
      const big = await h.inject({ method: 'POST', url: '/v1/transfers', headers: json, payload: JSON.stringify({ ...ab, labels: { x: 'y'.repeat(1024 * 1024) } }) })
      expect(big.statusCode).toBe(413)
      expect(big.json().code).toBe('payload_too_large')
    })

    it('answers 422 for an agent nobody enrolled, listing the known ones', async () => {
      const res = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { source: 'agent://x/images/a', destination: 'agent://b/images/a' } })
      expect(res.statusCode).toBe(422)
      expect(res.json()).toEqual({ code: 'unknown_agent', message: "source: no agent named 'x' is registered (known: a, b, c)" })
      const via = await h.inject({ method: 'POST', url: '/v1/transfers', payload: { source: 'agent://a/images/a', destination: 'null://?via=y' } })
      expect(via.statusCode).toBe(422)
      expect(via.json().message).toMatch(/^destination: no agent named 'y'/)
    })

    it('returns the first record with 200 for a repeated Idempotency-Key', async () => {
      const first = await create(ab, { 'idempotency-key': 'order-1' })
      const again = await h.inject({ method: 'POST', url: '/v1/transfers', payload: ab, headers: { 'idempotency-key': 'order-1' } })
      expect(again.statusCode).toBe(200)
      expect(again.json()).toEqual(first)
      const other = await h.inject({ method: 'POST', url: '/v1/transfers', payload: ab, headers: { 'idempotency-key': 'order-2' } })
      expect(other.statusCode).toBe(201)
      expect(h.store.size).toBe(2)
    })

    it('refuses an Idempotency-Key longer than 128 characters', async () => {
      const res = await h.inject({ method: 'POST', url: '/v1/transfers', payload: ab, headers: { 'idempotency-key': 'k'.repeat(129) } })
      expect(res.statusCode).toBe(400)
      expect(res.json().message).toMatch(/^headers\.idempotency-key: /)
    })
  })

  describe('GET /v1/transfers/:id', () => {
    it('shows progress, attempt and the last error', async () => {
      const { id } = await create(ab)
      const lastError = { code: 'network', message: 'connection reset', retryable: true, at: new Date().toISOString(), attempt: 1 }
      await h.store.transition(id, 'scheduled', { attempt: 1, executor: 'b' })
      await h.store.transition(id, 'active', { lastError })
      await h.store.setProgress(id, { bytesDone: 10, bytesTotal: 100 })
      const res = await h.inject({ url: `/v1/transfers/${id}` })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual(h.store.get(id))
      expect(res.json()).toMatchObject({ state: 'active', attempt: 1, executor: 'b', lastError, progress: { bytesDone: 10, bytesTotal: 100 } })
    })

    it('answers 404 not_found for an unknown id and 400 for a malformed one', async () => {
      const res = await h.inject({ url: `/v1/transfers/${UNKNOWN_ID}` })
      expect(res.statusCode).toBe(404)
      expect(res.json().code).toBe('not_found')
      const malformed = await h.inject({ url: '/v1/transfers/tr_nope' })
      expect(malformed.statusCode).toBe(400)
      expect(malformed.json().message).toMatch(/^params\.id: /)
    })
  })

  describe('GET /v1/transfers', () => {
    it('pages with limit and the next cursor', async () => {
      const ids: string[] = []
      for (let i = 0; i < 5; i++) ids.push((await create(transferInput('a', 'b', `${i}.img`))).id)
      const seen: string[] = []
      let after: string | undefined
      let pages = 0
      do {
        const res = await h.inject({ url: `/v1/transfers?limit=2${after !== undefined ? `&after=${after}` : ''}` })
        expect(res.statusCode).toBe(200)
        const page = res.json()
        seen.push(...page.items.map((r: TransferRecord) => r.id))
        after = page.next
        pages++
      } while (after !== undefined)
      expect(seen).toEqual(ids)
      expect(pages).toBe(3)
    })

    it('filters by state, agent and label', async () => {
      const red = await create({ ...transferInput('a', 'b'), labels: { team: 'red' } })
      const blue = await create({ ...transferInput('a', 'c'), labels: { team: 'blue' } })
      await h.inject({ method: 'POST', url: `/v1/transfers/${blue.id}/cancel` })
      const ids = async (query: string): Promise<string[]> => {
        const res = await h.inject({ url: `/v1/transfers?${query}` })
        expect(res.statusCode, res.body).toBe(200)
        return res.json().items.map((r: TransferRecord) => r.id)
      }
      expect(await ids('state=canceled')).toEqual([blue.id])
      expect(await ids('agent=b')).toEqual([red.id])
      expect(await ids('label=team:red')).toEqual([red.id])
      expect(await ids('label=team:green')).toEqual([])
    })

    it('filters by text in the id, locations, label values and last error, case-insensitively', async () => {
      const red = await create({ ...transferInput('a', 'b', 'Red-Image.img'), labels: { team: 'crimson' } })
      const blue = await create({ ...transferInput('a', 'c', 'blue.img') })
      await h.store.transition(blue.id, 'failed', { lastError: { code: 'checksum_mismatch', message: 'bytes differ', retryable: false, attempt: 1, at: new Date().toISOString() } })
      const ids = async (q: string): Promise<string[]> => {
        const res = await h.inject({ url: `/v1/transfers?q=${encodeURIComponent(q)}` })
        expect(res.statusCode, res.body).toBe(200)
        return res.json().items.map((r: TransferRecord) => r.id)
      }
      expect(await ids('red-image')).toEqual([red.id])
      expect(await ids('CRIMSON')).toEqual([red.id])
      expect(await ids('checksum_mismatch')).toEqual([blue.id])
      expect(await ids(blue.id.slice(-8))).toEqual([blue.id])
      expect(await ids('.img')).toEqual([red.id, blue.id])
      expect(await ids('nowhere')).toEqual([])
      // Literal text, not a pattern: '.' is a dot, and '([' is no error.
      expect(await ids('([')).toEqual([])
      expect(await ids('red.image')).toEqual([])
    })

    it('uses a default page of 100 and refuses bad queries', async () => {
      const empty = await h.inject({ url: '/v1/transfers' })
      expect(empty.json()).toEqual({ items: [] })
      for (const [query, field] of [['limit=1001', 'limit'], ['limit=abc', 'limit'], ['state=done', 'state'], ['label=nocolon', 'label'], ['after=xyz', 'after'], ['colour=red', "unknown field 'colour'"]]) {
        const res = await h.inject({ url: `/v1/transfers?${query}` })
        expect(res.statusCode, query).toBe(400)
        expect(res.json().message).toContain(field)
      }
      const states = await h.inject({ url: '/v1/transfers?state=done' })
      expect(states.json().message).toMatch(/must be one of queued, scheduled, active/)
    })
  })

  describe('POST /v1/transfers/:id/cancel', () => {
    it('cancels from a non-terminal state and tells dispatch', async () => {
      const { id } = await create(ab)
      await h.store.transition(id, 'scheduled', { executor: 'b' })
      await h.store.transition(id, 'active')
      const res = await h.inject({ method: 'POST', url: `/v1/transfers/${id}/cancel` })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({ id, state: 'canceled', executor: 'b' })
      expect(res.json().finishedAt).toBeDefined()
      expect(canceled.map(r => r.id)).toEqual([id])
    })

    it('is idempotent for a canceled transfer and refuses other terminal ones with 409', async () => {
      const { id } = await create(ab)
      await h.inject({ method: 'POST', url: `/v1/transfers/${id}/cancel` })
      const again = await h.inject({ method: 'POST', url: `/v1/transfers/${id}/cancel` })
      expect(again.statusCode).toBe(200)
      expect(again.json().state).toBe('canceled')
      expect(canceled).toHaveLength(1)

      const other = await create(transferInput('a', 'c'))
      await h.store.transition(other.id, 'failed')
      const res = await h.inject({ method: 'POST', url: `/v1/transfers/${other.id}/cancel` })
      expect(res.statusCode).toBe(409)
      expect(res.json()).toMatchObject({ code: 'invalid_state' })
      expect(h.store.get(other.id)?.state).toBe('failed')
    })

    it('answers 404 for an unknown transfer', async () => {
      const res = await h.inject({ method: 'POST', url: `/v1/transfers/${UNKNOWN_ID}/cancel` })
      expect(res.statusCode).toBe(404)
    })
  })

  describe('DELETE /v1/transfers/:id', () => {
    it('deletes a finished transfer with 204 and refuses a live one with 409', async () => {
      const { id } = await create(ab)
      const live = await h.inject({ method: 'DELETE', url: `/v1/transfers/${id}` })
      expect(live.statusCode).toBe(409)
      expect(live.json().code).toBe('invalid_state')
      await h.inject({ method: 'POST', url: `/v1/transfers/${id}/cancel` })
      const res = await h.inject({ method: 'DELETE', url: `/v1/transfers/${id}` })
      expect(res.statusCode).toBe(204)
      expect(res.body).toBe('')
      expect((await h.inject({ url: `/v1/transfers/${id}` })).statusCode).toBe(404)
      expect((await h.inject({ method: 'DELETE', url: `/v1/transfers/${id}` })).statusCode).toBe(404)
    })
  })

  describe('POST /v1/transfers/:id/retry', () => {
    it('submits a failed transfer again as a new one with the same input, once however often it is asked', async () => {
      const first = await create({ ...ab, priority: 7, retries: 2, labels: { team: 'red' }, checksumMode: 'blake3' })
      await h.store.transition(first.id, 'failed')
      const res = await h.inject({ method: 'POST', url: `/v1/transfers/${first.id}/retry` })
      expect(res.statusCode, res.body).toBe(201)
      const again = res.json()
      expect(again.id).not.toBe(first.id)
      expect(again).toMatchObject({ ...ab, state: 'queued', priority: 7, retries: 2, labels: { team: 'red' }, checksumMode: 'blake3', attempt: 0 })
      expect(res.headers.location).toBe(`/v1/transfers/${again.id}`)
      // The failed record stays as it was: its history is not rewritten.
      expect(h.store.get(first.id)?.state).toBe('failed')
      const twice = await h.inject({ method: 'POST', url: `/v1/transfers/${first.id}/retry` })
      expect(twice.statusCode).toBe(200)
      expect(twice.json().id).toBe(again.id)
    })

    it('refuses a transfer that has not failed or been canceled with 409, and an unknown one with 404', async () => {
      const { id } = await create(ab)
      const res = await h.inject({ method: 'POST', url: `/v1/transfers/${id}/retry` })
      expect(res.statusCode).toBe(409)
      expect(res.json().code).toBe('invalid_state')
      expect((await h.inject({ method: 'POST', url: `/v1/transfers/${UNKNOWN_ID}/retry` })).statusCode).toBe(404)
    })
  })
})
