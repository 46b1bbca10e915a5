import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createHash, createPrivateKey, randomUUID, sign } from 'node:crypto'
import { openSync } from 'node:fs'
import { executable } from './system.ts'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { freePort } from '../../cli/index.ts'

const run = promisify(execFile)

/**
 * The CNCF distribution registry (Debian's docker-registry, v2.8) on
 * loopback with filesystem storage, optionally behind a Docker token realm
 * served by this file (the flow of docs.docker.com/registry/spec/auth/token):
 * the registry answers 401 with `WWW-Authenticate: Bearer realm=…`, the
 * client asks the realm with Basic credentials, and presents the JWT it gets.
 */

/** The system tools the OCI tests need, each with the Debian package that ships it (.ci/run installs them). */
export const REGISTRY_TOOLS = [
  { bin: '/usr/bin/docker-registry', apt: 'docker-registry' },
  { bin: '/usr/bin/skopeo', apt: 'skopeo' },
  { bin: '/usr/bin/umoci', apt: 'umoci' },
  { bin: '/usr/bin/openssl', apt: 'openssl' }
]

/**
 * Why the registry tests cannot run here, or undefined when they can. Under
 * CI=true a missing tool is a failure, not a skip.
 */
export function registryUnavailable (): string | undefined {
  const missing = REGISTRY_TOOLS.filter(t => !executable(t.bin))
  if (missing.length === 0) return undefined
  const reason = `missing ${missing.map(t => t.bin).join(', ')} (apt-get install ${missing.map(t => t.apt).join(' ')})`
  if (process.env.CI === 'true') throw new Error(`CI=true and the OCI registry tests cannot run: ${reason}`)
  return reason
}

/**
 * An htpasswd line for alice / secret (bcrypt, cost 5, made once with
 * Python's crypt module): distribution takes only bcrypt, and Debian's
 * htpasswd (apache2-utils) is not needed for one fixed user.
 */
const ALICE_HTPASSWD = 'alice:$2b$05$6gh8Wy/6uLe7mDPRqmX7k.GRx4mCJfgvo060mTsC548vgexyVLsFy'

export interface RegistryOptions {
  /** Plain Basic auth (htpasswd) for every repository, with the one user alice / secret; not with `users`. */
  basicAlice?: boolean
  /** Put the registry behind a token realm that admits these users (name → password). */
  users?: Record<string, string>
  /** Repositories anyone may pull without credentials (the others need a user); all of them when no users are given. */
  publicRepos?: string[]
}

export class TestRegistry {
  readonly dir: string
  readonly storage: string
  port = 0
  private child?: ChildProcess
  private tokenServer?: Server
  private tokenPort = 0
  private key?: string
  /** Requests the token realm answered, for tests that check what was asked. */
  readonly tokenRequests: Array<{ user?: string, scope?: string, granted: boolean }> = []

  readonly opts: RegistryOptions

  private constructor (dir: string, opts: RegistryOptions) {
    this.dir = dir
    this.opts = opts
    this.storage = join(dir, 'storage')
  }

  static async start (opts: RegistryOptions = {}): Promise<TestRegistry> {
    const reg = new TestRegistry(await mkdtemp(join(tmpdir(), 'staccato-registry-')), opts)
    reg.port = await freePort()
    if (opts.users !== undefined) await reg.startTokenRealm()
    await reg.writeConfig()
    await reg.startProcess()
    return reg
  }

  get host (): string {
    return `127.0.0.1:${this.port}`
  }

  private async startTokenRealm (): Promise<void> {
    const keyFile = join(this.dir, 'token.key')
    const certFile = join(this.dir, 'token.crt')
    await run('/usr/bin/openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=staccato-test-token'])
    this.key = await readFile(keyFile, 'utf8')
    const certDer = Buffer.from((await readFile(certFile, 'utf8')).replace(/-----[^-]+-----|\s/g, ''), 'base64').toString('base64')
    this.tokenPort = await freePort()
    this.tokenServer = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x')
      const scope = url.searchParams.get('scope') ?? undefined
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')
      let user: string | undefined
      let granted = false
      if (basic != null) {
        const [name, ...rest] = Buffer.from(basic[1], 'base64').toString().split(':')
        if (this.opts.users?.[name] !== undefined && this.opts.users[name] === rest.join(':')) user = name
        if (user === undefined) {
          this.tokenRequests.push({ user: name, scope, granted })
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"wrong credentials"}')
          return
        }
      }
      // A scope is `repository:<name>:<actions>`; anonymous callers get pull on public repositories only.
      const access = []
      const m = /^repository:([^:]+):(.+)$/.exec(scope ?? '')
      if (m != null && (user !== undefined || this.opts.publicRepos?.includes(m[1]) === true)) {
        const asked = m[2].split(',')
        access.push({ type: 'repository', name: m[1], actions: user !== undefined ? asked : asked.filter(a => a === 'pull') })
        granted = true
      }
      this.tokenRequests.push({ user, scope, granted })
      const now = Math.floor(Date.now() / 1000)
      const token = this.jwt({ alg: 'RS256', typ: 'JWT', x5c: [certDer] }, {
        iss: 'staccato-test', sub: user ?? '', aud: 'staccato-test-registry', exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access
      })
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300 }))
    })
    await new Promise<void>(resolve => this.tokenServer?.listen(this.tokenPort, '127.0.0.1', resolve))
  }

  private jwt (header: object, claims: object): string {
    const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url')
    const input = `${part(header)}.${part(claims)}`
    return `${input}.${sign('sha256', Buffer.from(input), createPrivateKey(this.key as string)).toString('base64url')}`
  }

  private async writeConfig (): Promise<void> {
    if (this.opts.basicAlice === true) await writeFile(join(this.dir, 'htpasswd'), `${ALICE_HTPASSWD}\n`)
    const auth = this.opts.basicAlice === true
      ? `auth:
  htpasswd:
    realm: staccato-test
    path: ${join(this.dir, 'htpasswd')}
`
      : this.opts.users === undefined
      ? ''
      : `auth:
  token:
    realm: http://127.0.0.1:${this.tokenPort}/token
    service: staccato-test-registry
    issuer: staccato-test
    rootcertbundle: ${join(this.dir, 'token.crt')}
`
    await writeFile(join(this.dir, 'config.yml'), `version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${this.storage}
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:${this.port}
${auth}`)
  }

  private async startProcess (): Promise<void> {
    const log = join(this.dir, 'registry.log')
    const fd = openSync(log, 'a')
    this.child = spawn('/usr/bin/docker-registry', ['serve', join(this.dir, 'config.yml')], { stdio: ['ignore', fd, fd] })
    const child = this.child
    for (let i = 0; i < 600; i++) {
      if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${await readFile(log, 'utf8')}`)
      if (await listening(this.port)) return
      await sleep(50)
    }
    throw new Error(`docker-registry did not listen on ${this.host}: ${await readFile(log, 'utf8')}`)
  }

  /** Kills the registry (SIGKILL): a client mid-blob sees its connection drop. */
  async kill (): Promise<void> {
    const child = this.child
    if (child === undefined || child.exitCode !== null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }

  async restart (): Promise<void> {
    await this.kill()
    await this.startProcess()
  }

  /** The file that holds a blob in the registry's filesystem storage (the layout of distribution's storage driver). */
  blobFile (digest: string): string {
    const hex = digest.replace(/^sha256:/, '')
    return join(this.storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data')
  }

  async log (): Promise<string> {
    return await readFile(join(this.dir, 'registry.log'), 'utf8').catch(() => '')
  }

  async stop (): Promise<void> {
    await this.kill()
    await new Promise(resolve => this.tokenServer?.close(resolve) ?? resolve(undefined))
    if (process.env.STACCATO_KEEP_TEST_DIR === undefined) await rm(this.dir, { recursive: true, force: true })
  }
}

async function listening (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

export interface Layer { files: Record<string, string | Uint8Array> }
export interface BuiltImage { layout: string, tag: string, manifestDigest: string, layers: string[], config: string }

export const sha256 = (data: Uint8Array | string): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

/**
 * Builds an image in an OCI layout with umoci, one layer per entry of
 * `layers` (its files written by the test), for one platform.
 */
export async function buildImage (dir: string, name: string, layers: Layer[], platform = { os: 'linux', architecture: 'amd64' }): Promise<BuiltImage> {
  const layout = join(dir, `layout-${name}`)
  const tag = 'built'
  await run('/usr/bin/umoci', ['init', '--layout', layout])
  await run('/usr/bin/umoci', ['new', '--image', `${layout}:${tag}`])
  for (const [i, layer] of layers.entries()) {
    const src = join(dir, `layer-${name}-${i}`)
    await mkdir(src, { recursive: true })
    for (const [path, data] of Object.entries(layer.files)) await writeFile(join(src, path), data)
    await run('/usr/bin/umoci', ['insert', '--rootless', '--image', `${layout}:${tag}`, src, `/layer${i}`])
  }
  await run('/usr/bin/umoci', ['config', '--image', `${layout}:${tag}`, '--os', platform.os, '--architecture', platform.architecture, '--config.cmd', '/bin/true'])
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string, annotations?: Record<string, string> }> }
  const manifestDigest = index.manifests.find(m => m.annotations?.['org.opencontainers.image.ref.name'] === tag)?.digest as string
  const manifest = JSON.parse(await readFile(join(layout, 'blobs/sha256', manifestDigest.slice(7)), 'utf8')) as { config: { digest: string }, layers: Array<{ digest: string }> }
  return { layout, tag, manifestDigest, layers: manifest.layers.map(l => l.digest), config: manifest.config.digest }
}

/** Pushes a built image with skopeo (no TLS on loopback), as `repo:tag`; `v2s2` converts it to Docker's schema 2. */
export async function pushImage (reg: TestRegistry, image: BuiltImage, repo: string, tag: string, creds?: string, format?: 'v2s2' | 'oci'): Promise<void> {
  const args = ['copy', '--quiet', '--dest-tls-verify=false', ...(creds !== undefined ? ['--dest-creds', creds] : []), ...(format !== undefined ? ['--format', format] : []), `oci:${image.layout}:${image.tag}`, `docker://${reg.host}/${repo}:${tag}`]
  await run('/usr/bin/skopeo', args)
}

/**
 * Pushes an image index (a manifest list) over the two platforms' manifests,
 * already pushed to `repo`, as `repo:tag`; with credentials it first asks the
 * token realm for push access as any client would.
 */
export async function pushIndex (reg: TestRegistry, repo: string, tag: string, images: Array<{ image: BuiltImage, os: string, architecture: string }>, creds?: string): Promise<string> {
  const manifests = await Promise.all(images.map(async ({ image, os, architecture }) => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: image.manifestDigest,
    size: (await readFile(join(image.layout, 'blobs/sha256', image.manifestDigest.slice(7)))).length,
    platform: { os, architecture }
  })))
  const body = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests })
  const url = `http://${reg.host}/v2/${repo}/manifests/${tag}`
  const headers: Record<string, string> = { 'content-type': 'application/vnd.oci.image.index.v1+json' }
  let res = await fetch(url, { method: 'PUT', headers, body })
  const challenge = /realm="([^"]+)",service="([^"]+)"/.exec(res.headers.get('www-authenticate') ?? '')
  if (res.status === 401 && challenge != null && creds !== undefined) {
    const realm = new URL(challenge[1])
    realm.searchParams.set('service', challenge[2])
    realm.searchParams.set('scope', `repository:${repo}:pull,push`)
    const answer = await fetch(realm, { headers: { authorization: `Basic ${Buffer.from(creds).toString('base64')}` } })
    const { token } = await answer.json() as { token: string }
    res = await fetch(url, { method: 'PUT', headers: { ...headers, authorization: `Bearer ${token}` }, body })
  }
  if (res.status !== 201) throw new Error(`PUT ${url} answered ${res.status}: ${await res.text()}`)
  return sha256(body)
}
