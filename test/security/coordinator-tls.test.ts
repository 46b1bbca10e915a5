import { execFile } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:https'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BIN } from '../../cli/index.ts'
import { TestMesh } from '../helpers/mesh.ts'
import { filesUnder } from './helpers.ts'

const run = promisify(execFile)

/**
 * A real coordinator process serving its API over TLS with a certificate
 * made at test time, driven by the `staccato token` commands; then a look at
 * what it left on disk and in its log.
 */
describe('coordinator: TLS, token commands, secrets at rest', () => {
  let mesh: TestMesh
  let ca: Buffer
  let certFile: string
  const made: string[] = []

  async function https (method: string, path: string, token?: string, body?: unknown): Promise<{ status: number, body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const url = new URL(mesh.ready.apiUrl + path)
    return await new Promise((resolve, reject) => {
      const req = request(url, {
        method,
        ca,
        headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }
      }, res => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { text += c })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) }))
      })
      req.on('error', reject)
      req.end(body !== undefined ? JSON.stringify(body) : undefined)
    })
  }

  /** `staccato <args>` trusting the test's certificate the way an operator would: NODE_EXTRA_CA_CERTS. */
  async function cli (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: certFile, STACCATO_URL: mesh.ready.apiUrl, STACCATO_TOKEN: mesh.ready.apiToken, XDG_CONFIG_HOME: mesh.dir }
    try {
      const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env })
      return { code: 0, stdout, stderr }
    } catch (err) {
      const e = err as { code: number, stdout: string, stderr: string }
      return { code: e.code, stdout: e.stdout, stderr: e.stderr }
    }
  }

  beforeAll(async () => {
    mesh = await TestMesh.create()
    certFile = join(mesh.dir, 'cert.pem')
    const keyFile = join(mesh.dir, 'key.pem')
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', keyFile, '-out', certFile, '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'
    ])
    ca = await readFile(certFile)
    const tenants = join(mesh.dir, 'tenants.yaml')
    await writeFile(tenants, 'tenants:\n  team-a:\n    agents: [store-1]\n    volumes: [images]\n')
    await mesh.startCoordinator(['--tls-cert', certFile, '--tls-key', keyFile, '--tenants-file', tenants, '--rate-limit', '100000'])
  })
  afterAll(async () => { await mesh.stop() })

  it('serves the API over TLS only', async () => {
    expect(mesh.ready.apiUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    expect((await https('GET', '/healthz')).status).toBe(200)
    expect((await https('GET', '/v1/agents', mesh.ready.apiToken)).status).toBe(200)
    await expect(fetch(mesh.ready.apiUrl.replace('https:', 'http:') + '/healthz')).rejects.toThrow()
  })

  it('creates, lists and revokes tokens with the CLI; a revoked token is refused at once', async () => {
    const created = await cli(['token', 'create', '--role', 'operator', '--tenant', 'team-a', '--name', 'ci'])
    expect(created.code, created.stderr).toBe(0)
    const token = created.stdout.trim()
    made.push(token)
    expect(token).toMatch(/^stc_\S+$/)
    expect(created.stderr).toMatch(/API token tok_\w+ \(operator, tenant team-a\): shown only now/)
    expect((await https('GET', '/v1/transfers', token)).status).toBe(200)
    expect((await https('GET', '/v1/tokens', token)).status).toBe(403)
    // The tenant allow-list from --tenants-file applies to it.
    const refused = await https('POST', '/v1/transfers', token, { source: 'agent://store-2/images/a.img', destination: 'agent://store-1/images/a.img' })
    expect(refused).toEqual({ status: 403, body: { code: 'forbidden', message: 'tenant team-a may not use agent store-2' } })

    const list = await cli(['token', 'list', '--json'])
    expect(list.code).toBe(0)
    expect(list.stdout).not.toContain(token)
    const mine = (JSON.parse(list.stdout) as { items: Array<{ id: string, name?: string }> }).items.find(t => t.name === 'ci')
    expect(mine).toBeDefined()
    const table = await cli(['token', 'list'])
    expect(table.stdout).toMatch(new RegExp(`${mine?.id}\\s+operator\\s+team-a\\s+ci\\s+api\\s+never\\s+active`))

    const revoked = await cli(['token', 'revoke', mine?.id ?? ''])
    expect(revoked.code, revoked.stderr).toBe(0)
    expect((await https('GET', '/v1/transfers', token)).status).toBe(401)

    const join = await cli(['agent-token', 'create', '--single-use', '--expires', '1h', '--json'])
    expect(join.code, join.stderr).toBe(0)
    const jt = JSON.parse(join.stdout) as { token: string, singleUse: boolean, expiresAt: string }
    made.push(jt.token)
    expect(jt.singleUse).toBe(true)
    expect((await cli(['agent-token', 'list'])).stdout).not.toContain(jt.token)

    const wrong = await cli(['token', 'create', '--role', 'root', '--tenant', 'a'])
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toContain("--role 'root' must be one of reader, operator, admin")
    const denied = await cli(['token', 'list', '--token', token])
    expect(denied.code).toBe(1)
    expect(denied.stderr).toContain('the token was refused')
  })

  it('keeps no clear token in its store or its log; the operator\'s copy is 0600', async () => {
    const dataDir = join(mesh.dir, 'coordinator')
    expect((await stat(join(dataDir, 'api-token'))).mode & 0o777).toBe(0o600)
    expect((await readFile(join(dataDir, 'api-token'), 'utf8')).trim()).toBe(mesh.ready.apiToken)
    const secrets = [mesh.ready.apiToken, mesh.ready.joinToken, ...made]
    expect(made.length).toBe(2)
    const kept = (await filesUnder(dataDir)).filter(f => !/[/\\](api-token|join-token)$/.test(f.path))
    expect(kept.some(f => f.path.includes(join('tokens', '')))).toBe(true)
    for (const f of kept) for (const s of secrets) expect(f.bytes.includes(s), `${s.slice(0, 8)}… in ${f.path}`).toBe(false)
    const log = await readFile(join(mesh.dir, 'logs', 'coordinator.log'), 'utf8')
    expect(log).toContain('API token created')
    for (const s of secrets) expect(log.includes(s), `${s.slice(0, 8)}… in the log`).toBe(false)
  })
})
