import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN, SecureApi } from './helpers.ts'

interface Schema { type?: string, properties?: Record<string, Schema>, enum?: unknown[], anyOf?: Schema[], items?: Schema }
interface Parameter { in: string, name: string, schema?: Schema }
interface Operation { method: string, path: string, params: Parameter[], body?: Schema }
interface FuzzRequest { method: string, url: string, headers: Record<string, string>, body?: string }

/** Values that have broken parsers before: traversal, encodings, huge and odd numbers. */
const NASTY_STRINGS = ['', ' ', '..', '../../etc/passwd', '%2e%2e%2f', '%00', '\u0000', '*', '#', 'agent://store-1/images/../../etc/passwd',
  'tr_00000000000000000000000000', 'x'.repeat(5000), '{"a":1}', '__proto__', 'constructor', '1e400', '-0', '\ud800']

/** Percent-encodes anything, lone surrogates included. */
function enc (text: string): string {
  return encodeURIComponent(text.toWellFormed())
}

function stringish (): fc.Arbitrary<string> {
  return fc.oneof(fc.string({ unit: 'binary', maxLength: 64 }), fc.constantFrom(...NASTY_STRINGS))
}

/** A value for one schema: mostly of the right kind (so validation lets some through), often not. */
function valueFor (schema: Schema | undefined, depth = 0): fc.Arbitrary<unknown> {
  const kinds: Array<fc.Arbitrary<unknown>> = [fc.jsonValue({ maxDepth: 3 })]
  const enums = (schema?.anyOf ?? []).flatMap(s => s.enum ?? []).concat(schema?.enum ?? [])
  if (enums.length > 0) kinds.push(fc.constantFrom(...enums))
  const types = [schema?.type, ...(schema?.anyOf ?? []).map(s => s.type)]
  if (types.includes('string')) kinds.push(stringish())
  if (types.includes('integer') || types.includes('number')) kinds.push(fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-1, 0, 2 ** 53, 1e308)))
  if (types.includes('boolean')) kinds.push(fc.boolean())
  if (types.includes('array') && depth < 2) kinds.push(fc.array(valueFor(schema?.items, depth + 1), { maxLength: 5 }))
  if (schema?.properties !== undefined && depth < 2) kinds.push(objectFor(schema, depth + 1))
  return fc.oneof(...kinds)
}

/** An object with some of the schema's fields, sometimes with fields it does not know. */
function objectFor (schema: Schema, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const fields = Object.entries(schema.properties ?? {})
  return fc.tuple(
    fc.record(Object.fromEntries(fields.map(([k, s]) => [k, valueFor(s, depth)])), { requiredKeys: [] }),
    fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 2 })
  ).map(([known, extra]) => ({ ...extra, ...known }))
}

function bodyFor (schema: Schema | undefined): fc.Arbitrary<{ body?: string, type?: string }> {
  return fc.oneof(
    { weight: 5, arbitrary: (schema !== undefined ? objectFor(schema) : fc.jsonValue()).map(v => ({ body: JSON.stringify(v), type: 'application/json' })) },
    { weight: 1, arbitrary: fc.jsonValue().map(v => ({ body: JSON.stringify(v), type: 'application/json' })) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map(s => ({ body: s, type: 'application/json' })) },
    { weight: 1, arbitrary: fc.constantFrom('[', '{"source":', '{"__proto__":{"admin":true}}', '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]', 'null', '1e99999').map(s => ({ body: s, type: 'application/json' })) },
    { weight: 1, arbitrary: fc.tuple(fc.jsonValue(), fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'garbage')).map(([v, type]) => ({ body: JSON.stringify(v), type })) },
    { weight: 1, arbitrary: fc.constant({ type: 'application/json' }) },
    { weight: 1, arbitrary: fc.constant({}) }
  )
}

function requestFor (op: Operation): fc.Arbitrary<FuzzRequest> {
  const pathParams = op.params.filter(p => p.in === 'path')
  const queryParams = op.params.filter(p => p.in === 'query' && p.name !== 'wait')
  const path = fc.tuple(...pathParams.map(() => fc.oneof(stringish(), fc.string({ unit: 'grapheme', maxLength: 30 }))))
    .map(values => pathParams.reduce((url, p, i) => url.replace(`{${p.name}}`, enc(values[i]) || 'x'), op.path))
  const query = fc.tuple(
    fc.subarray(queryParams.map(p => p.name)),
    fc.array(fc.string({ maxLength: 8 }), { maxLength: 2 }),
    fc.array(fc.oneof(stringish(), fc.integer().map(String)), { minLength: 8, maxLength: 8 })
  ).map(([known, unknown, values]) => {
    const q = new URLSearchParams()
    ;[...known, ...unknown].forEach((name, i) => q.append(name, values[i % values.length]))
    return q.size > 0 ? `?${q}` : ''
  })
  const auth = fc.oneof(
    { weight: 8, arbitrary: fc.constant(`Bearer ${ADMIN}`) },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: stringish().map(s => `Bearer ${enc(s)}`) }
  )
  const none: { body?: string, type?: string } = {}
  const body = op.method === 'GET' || op.method === 'DELETE' ? fc.oneof({ weight: 6, arbitrary: fc.constant(none) }, { weight: 1, arbitrary: bodyFor(op.body) }) : bodyFor(op.body)
  return fc.tuple(path, query, auth, body, fc.option(stringish().map(s => enc(s).slice(0, 200)))).map(([p, q, authorization, b, idem]) => {
    const headers: Record<string, string> = {}
    if (authorization !== undefined) headers.authorization = authorization
    if (b.type !== undefined) headers['content-type'] = b.type
    if (idem !== null) headers['idempotency-key'] = idem
    // A GET with a body is legal HTTP but fetch refuses to send one.
    const method = b.body !== undefined && op.method === 'GET' ? 'POST' : op.method
    return { method, url: p + q, headers, body: b.body }
  })
}

describe('REST API under 1,000 malformed requests', () => {
  let api: SecureApi
  let operations: Operation[]

  beforeAll(async () => {
    api = await SecureApi.start({ rateLimit: { max: 1_000_000, unauthenticatedMax: 1_000_000, windowMs: 60_000 } })
    // The routes as the API itself documents them: a route added later is fuzzed without touching this test.
    const doc = (await api.call('GET', '/openapi.json', { token: null })).body as { paths: Record<string, Record<string, { parameters?: Parameter[], requestBody?: { content: Record<string, { schema: Schema }> } }>> }
    operations = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({
      method: method.toUpperCase(), path, params: op.parameters ?? [], body: op.requestBody?.content['application/json']?.schema
    })))
      // A live event stream never ends by design; its query is checked like every other.
      .filter(op => !(op.method === 'GET' && op.path === '/v1/events'))
  })
  afterAll(async () => { await api.stop() })

  it('never answers 5xx and never falls over', async () => {
    expect(operations.length).toBeGreaterThan(10)
    const statuses = new Map<number, number>()
    await fc.assert(fc.asyncProperty(fc.constantFrom(...operations).chain(requestFor), async req => {
      const res = await fetch(api.url + req.url, { method: req.method, headers: req.headers, body: req.body, signal: AbortSignal.timeout(20_000) })
      const text = await res.text()
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
      expect(res.status, `${req.method} ${req.url} ${JSON.stringify(req.headers)} ${req.body?.slice(0, 300)} → ${text.slice(0, 300)}`).toBeLessThan(500)
      if (res.status >= 400) expect(JSON.parse(text)).toMatchObject({ code: expect.any(String), message: expect.any(String) })
    }), { numRuns: 1000 })
    // The run reached past validation as well as being stopped by it.
    const count = (lo: number, hi: number): number => [...statuses].filter(([s]) => s >= lo && s < hi).reduce((n, [, c]) => n + c, 0)
    expect(count(200, 300)).toBeGreaterThan(20)
    expect(count(400, 500)).toBeGreaterThan(200)
    expect((await api.call('GET', '/healthz', { token: null })).status).toBe(200)
    expect((await api.call('GET', '/v1/transfers')).status).toBe(200)
  })
})
