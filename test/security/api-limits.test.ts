import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SecureApi } from './helpers.ts'

describe('REST API: tenant allow-list, rate limits, body limits, input checks', () => {
  let api: SecureApi
  let teamA: string
  let teamB: string

  beforeAll(async () => {
    api = await SecureApi.start({
      tenants: {
        'team-a': { agents: ['store-1', 'compute-*'], volumes: ['images', 'scratch', 'archive'], schemes: ['random'] },
        '*': { agents: [] }
      },
      rateLimit: { max: 40, unauthenticatedMax: 8, windowMs: 60_000 }
    })
    teamA = (await api.mint('operator', 'team-a')).token
    teamB = (await api.mint('operator', 'team-b')).token
  })
  afterAll(async () => { await api.stop() })

  it('lets a tenant use only the agents, volumes and schemes it is allowed: 403 forbidden names what', async () => {
    const submit = async (source: string, destination: string, token = teamA): Promise<{ status: number, body: { code: string, message: string } }> => {
      const { status, body } = await api.call('POST', '/v1/transfers', { token, body: { source, destination } })
      return { status, body }
    }
    expect((await submit('agent://store-1/images/a.img', 'agent://compute-1/scratch/a.img')).status).toBe(201)
    expect((await submit('random://?size=1KiB&seed=1', 'agent://compute-1/scratch/r.img')).status).toBe(201)
    const cases: Array<[string, string, string]> = [
      ['agent://store-2/images/a.img', 'agent://compute-1/scratch/a.img', 'tenant team-a may not use agent store-2'],
      ['agent://store-1/images/a.img', 'agent://store-2/scratch/a.img', 'tenant team-a may not use agent store-2'],
      ['agent://store-1/secrets/a.img', 'agent://compute-1/scratch/a.img', 'tenant team-a may not use volume secrets (on agent store-1)'],
      ['https://example.org/a.img?via=compute-1', 'agent://compute-1/scratch/a.img', 'tenant team-a may not use https:// locations']
    ]
    for (const [source, destination, message] of cases) {
      expect(await submit(source, destination), `${source} → ${destination}`).toEqual({ status: 403, body: { code: 'forbidden', message } })
    }
    // A tenant without a rule of its own gets the '*' rule: here, no agent at all.
    expect(await submit('agent://store-1/images/a.img', 'agent://compute-1/scratch/a.img', teamB))
      .toEqual({ status: 403, body: { code: 'forbidden', message: 'tenant team-b may not use agent store-1' } })
    // Nothing refused was stored.
    const mine = await api.call('GET', '/v1/transfers', { token: teamA })
    expect(mine.body.items).toHaveLength(2)
  })

  it('applies the * rule to a tenant named after an Object.prototype property', async () => {
    const token = (await api.mint('operator', 'constructor')).token
    const res = await api.call('POST', '/v1/transfers', { token, body: { source: 'agent://store-1/images/a.img', destination: 'agent://compute-1/scratch/a.img' } })
    expect({ status: res.status, body: res.body }).toEqual({ status: 403, body: { code: 'forbidden', message: 'tenant constructor may not use agent store-1' } })
  })

  it('refuses a destination in a read-only volume at submission', async () => {
    const res = await api.call('POST', '/v1/transfers', { token: teamA, body: { source: 'agent://store-1/images/a.img', destination: 'agent://compute-1/archive/a.img' } })
    expect(res.status).toBe(403)
    expect(res.body).toEqual({ code: 'permission_denied', message: 'destination: volume archive of agent compute-1 is read-only' })
  })

  it('refuses paths that could leave a volume, as sent, with a clear 400', async () => {
    const cases: Array<[string, string]> = [
      ['agent://store-1/images/../../etc/passwd', "source: '..' path segments are not allowed"],
      ['agent://store-1/images/%2e%2e/%2e%2e/etc/passwd', "source: '..' path segments are not allowed"],
      ['agent://store-1/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd', "source: an encoded '/' or a backslash inside a path segment is not allowed"],
      ['agent://store-1/images/a.img%00.txt', 'source: NUL bytes are not allowed in paths'],
      ['agent://store-1/images/a.img\u0000', 'source: control characters (including NUL) are not allowed in locations'],
      ['agent://store-1/images/.\n./etc/passwd', 'source: control characters (including NUL) are not allowed in locations'],
      ['agent://store-1/images/..%5c..%5cetc', "source: an encoded '/' or a backslash inside a path segment is not allowed"],
      ['agent://store-1/images/%E0%A4%A', "source: malformed percent-encoding in '%E0%A4%A'"],
      ['agent://store-1/images/./a.img', "source: '.' path segments are not allowed"]
    ]
    for (const [source, message] of cases) {
      const res = await api.call('POST', '/v1/transfers', { body: { source, destination: 'agent://compute-1/scratch/x.img' } })
      expect(res.status, source).toBe(400)
      expect(res.body.code).toBe('invalid_argument')
      expect(res.body.message, source).toContain(message)
    }
    const dest = await api.call('POST', '/v1/transfers', { body: { source: 'agent://store-1/images/a.img', destination: 'agent://compute-1/scratch/../../../root/.ssh/authorized_keys' } })
    expect(dest.status).toBe(400)
    expect(dest.body.message).toContain("destination: '..' path segments are not allowed")
  })

  it('rejects unknown fields and wrong types with a message naming the field', async () => {
    const res = await api.call('POST', '/v1/transfers', { body: { source: 'agent://store-1/images/a.img', destination: 'agent://compute-1/scratch/b.img', colour: 'red' } })
    expect(res.status).toBe(400)
    expect(res.body).toEqual({ code: 'invalid_argument', message: "body: unknown field 'colour'" })
    const typed = await api.call('POST', '/v1/transfers', { body: { source: 'agent://store-1/images/a.img', destination: 'agent://compute-1/scratch/b.img', priority: '5' } })
    expect(typed.status).toBe(400)
    expect(typed.body.message).toMatch(/^body\.priority: /)
    const query = await api.call('GET', '/v1/transfers?limit=100000')
    expect(query.status).toBe(400)
    expect(query.body.message).toMatch(/^querystring\.limit: /)
  })

  it('answers 413 to a body over 1 MiB without reading it into a transfer', async () => {
    const before = (await api.call('GET', '/v1/transfers')).body.items.length
    const big = JSON.stringify({ source: 'agent://store-1/images/a.img', destination: 'agent://compute-1/scratch/big.img', labels: { pad: 'x'.repeat(2 * 1024 * 1024) } })
    const res = await api.call('POST', '/v1/transfers', { raw: big })
    expect(res.status).toBe(413)
    expect(res.body.code).toBe('payload_too_large')
    expect((await api.call('GET', '/v1/transfers')).body.items.length).toBe(before)
  })

  it('limits requests per token, and guesses per address: 429 with Retry-After', async () => {
    // A fresh token has its own allowance, untouched by the requests above.
    const hungry = (await api.mint('reader', 'team-a')).token
    const other = (await api.mint('reader', 'team-a')).token
    const answers = []
    for (let i = 0; i < 45; i++) answers.push((await api.call('GET', '/v1/transfers', { token: hungry })).status)
    expect(answers.slice(0, 40).every(s => s === 200)).toBe(true)
    expect(answers.slice(40).every(s => s === 429)).toBe(true)
    const limited = await api.call('GET', '/v1/transfers', { token: hungry })
    expect(limited.body.code).toBe('rate_limited')
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
    // Another token is not slowed down by it.
    expect((await api.call('GET', '/v1/transfers', { token: other })).status).toBe(200)
    // Guessing: every attempt uses a different random token, yet the address runs out of tries.
    const guesses = []
    for (let i = 0; i < 10; i++) guesses.push((await api.call('GET', '/v1/transfers', { token: `stc_${randomBytes(32).toString('base64url')}` })).status)
    expect(guesses.slice(0, 8).every(s => s === 401)).toBe(true)
    expect(guesses.slice(8).every(s => s === 429)).toBe(true)
    // /healthz stays open for load balancers.
    expect((await api.call('GET', '/healthz', { token: null })).status).toBe(200)
  })
})
