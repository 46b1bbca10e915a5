import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { copyImageToLayout, file, oci } from '../../protocols/index.ts'
import type { OciPlugin } from '../../protocols/index.ts'
import { TestRegistry, buildImage, pushImage, pushIndex, registryUnavailable, sha256 } from '../helpers/registry.ts'
import type { BuiltImage } from '../helpers/registry.ts'
import { collect } from './support.ts'

const run = promisify(execFile)
const skip = registryUnavailable()
if (skip !== undefined) console.warn(`skipping the oci plug-in tests: ${skip}`)

/**
 * The oci plug-in and the layout writer against a real registry
 * (docker-registry on loopback behind a Docker token realm): the public repo
 * reads without credentials, the private one only with the right ones.
 */
describe.skipIf(skip !== undefined)('oci plug-in against docker-registry', () => {
  let reg: TestRegistry
  let dir: string
  let amd: BuiltImage
  let arm: BuiltImage
  const bigLayer = Buffer.alloc(300_000).map((_, i) => (i * 7919) % 251)
  const open = (extra: Partial<Parameters<typeof oci>[0]> = {}): OciPlugin => oci({
    allowAddresses: ['loopback'], retries: 1, retryDelay: 10, platform: { os: 'linux', architecture: 'amd64' }, ...extra,
    registries: { [reg.host]: { insecure: true }, ...extra.registries }
  })

  beforeAll(async () => {
    reg = await TestRegistry.start({ users: { alice: 'secret' }, publicRepos: ['pub/app'] })
    dir = await mkdtemp(join(tmpdir(), 'staccato-oci-'))
    amd = await buildImage(dir, 'amd', [{ files: { 'a.txt': 'hello amd64' } }, { files: { 'big.bin': bigLayer } }])
    arm = await buildImage(dir, 'arm', [{ files: { 'a.txt': 'hello arm64' } }], { os: 'linux', architecture: 'arm64' })
    for (const repo of ['pub/app', 'team/private']) {
      await pushImage(reg, amd, repo, '1.4', 'alice:secret')
      await pushImage(reg, arm, repo, '1.4-arm', 'alice:secret')
    }
    await pushImage(reg, amd, 'pub/app', 'docker', 'alice:secret', 'v2s2')
    await pushIndex(reg, 'pub/app', 'multi', [{ image: amd, os: 'linux', architecture: 'amd64' }, { image: arm, os: 'linux', architecture: 'arm64' }], 'alice:secret')
  }, 120_000)

  afterAll(async () => {
    await reg?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('reads a tag as its manifest, checked against the registry digest', async () => {
    const p = open()
    const url = new URL(`oci://${reg.host}/pub/app:1.4`)
    const st = await p.stat(url)
    expect(`sha256:${st.sha256 ?? ''}`).toBe(amd.manifestDigest)
    const bytes = (await collect(p.read(url, { offset: 0 })))
    expect(sha256(bytes)).toBe(amd.manifestDigest)
    await p.close?.()
  })

  it('reads a Docker schema 2 image into a layout that skopeo reads', async () => {
    const p = open()
    const root = join(dir, 'vol-docker')
    await mkdir(root, { recursive: true })
    const dest = file({ volumes: [{ name: 'vol', root, readOnly: false }] })
    const result = await copyImageToLayout({ source: p, url: new URL(`oci://${reg.host}/pub/app:docker`), dest, dir: new URL('file:///vol/app/'), key: 'd1' })
    const index = JSON.parse(await readFile(join(root, 'app/index.json'), 'utf8')) as { manifests: Array<{ mediaType: string, digest: string }> }
    // The layout holds the OCI form of the Docker manifest, over the same blobs.
    expect(index.manifests[0]).toMatchObject({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: result.digest })
    expect(result.registryDigest).not.toBe(result.digest)
    const { stdout } = await run('/usr/bin/skopeo', ['inspect', `oci:${join(root, 'app')}:docker`])
    const seen = JSON.parse(stdout) as { Digest: string, Layers: string[] }
    expect(seen.Digest).toBe(result.digest)
    expect(seen.Layers).toEqual(amd.layers)
    await p.close?.()
  })

  it('picks the platform from an index: the agent default, or ?platform=', async () => {
    const p = open()
    expect(`sha256:${(await p.stat(new URL(`oci://${reg.host}/pub/app:multi`))).sha256 ?? ''}`).toBe(amd.manifestDigest)
    expect(`sha256:${(await p.stat(new URL(`oci://${reg.host}/pub/app:multi?platform=linux/arm64`))).sha256 ?? ''}`).toBe(arm.manifestDigest)
    await expect(p.stat(new URL(`oci://${reg.host}/pub/app:multi?platform=linux/s390x`))).rejects.toMatchObject({ code: 'not_found', message: expect.stringContaining('linux/amd64, linux/arm64') })
    await p.close?.()
  })

  it('reads a blob by digest, from an offset with Range too', async () => {
    const p = open()
    const url = new URL(`oci://${reg.host}/pub/app@${amd.layers[1]}`)
    const st = await p.stat(url)
    const whole = (await collect(p.read(url, { offset: 0 })))
    expect(whole.length).toBe(st.size)
    expect(sha256(whole)).toBe(amd.layers[1])
    const tail = (await collect(p.read(url, { offset: 1000, expect: st })))
    expect(tail.equals(whole.subarray(1000))).toBe(true)
    await p.close?.()
  })

  it('says not_found for a tag that does not exist', async () => {
    const p = open()
    await expect(p.stat(new URL(`oci://${reg.host}/pub/app:nope`))).rejects.toMatchObject({ code: 'not_found', message: expect.stringContaining('MANIFEST_UNKNOWN') })
    await p.close?.()
  })

  it('refuses a private repository without credentials and with wrong ones, and reads it with the right ones', async () => {
    const url = new URL(`oci://${reg.host}/team/private:1.4`)
    const anonymous = open()
    await expect(anonymous.stat(url)).rejects.toMatchObject({ code: 'permission_denied', message: expect.stringContaining('has none') })
    const wrong = open({ registries: { [reg.host]: { insecure: true, username: 'alice', password: 'guess' } } })
    const err = await wrong.stat(url).then(() => new Error('read without the right credentials'), (e: Error) => e)
    expect(err).toMatchObject({ code: 'permission_denied', message: expect.stringContaining('refused the credentials') })
    expect(err.message).not.toContain('guess')
    const right = open({ registries: { [reg.host]: { insecure: true, username: 'alice', password: 'secret' } } })
    expect(`sha256:${(await right.stat(url)).sha256 ?? ''}`).toBe(amd.manifestDigest)
    for (const p of [anonymous, wrong, right]) await p.close?.()
  })

  it('writes an OCI layout that skopeo reads, and fails on a blob whose bytes do not match', async () => {
    const root = join(dir, 'vol')
    await mkdir(root, { recursive: true })
    const dest = file({ volumes: [{ name: 'vol', root, readOnly: false }] })
    const p = open()
    const result = await copyImageToLayout({ source: p, url: new URL(`oci://${reg.host}/pub/app:multi`), dest, dir: new URL('file:///vol/images/app/'), key: 't1' })
    expect(result.digest).toBe(amd.manifestDigest)
    const { stdout } = await run('/usr/bin/skopeo', ['inspect', `oci:${join(root, 'images/app')}:multi`])
    expect((JSON.parse(stdout) as { Digest: string, Architecture: string }).Digest).toBe(amd.manifestDigest)
    const again = await copyImageToLayout({ source: p, url: new URL(`oci://${reg.host}/pub/app:1.4`), dest, dir: new URL('file:///vol/images/app/'), key: 't2' })
    expect(again.fetched).toBe(0)
    const index = JSON.parse(await readFile(join(root, 'images/app/index.json'), 'utf8')) as { manifests: unknown[] }
    expect(index.manifests).toHaveLength(2)

    // Damage the big layer in the registry's own storage: the registry serves it as it is.
    const blob = reg.blobFile(amd.layers[1])
    const good = await readFile(blob)
    const bad = Buffer.from(good)
    bad[bad.length - 10] ^= 0xff
    await writeFile(blob, bad)
    try {
      const err = await copyImageToLayout({ source: p, url: new URL(`oci://${reg.host}/pub/app:1.4`), dest, dir: new URL('file:///vol/images/other/'), key: 't3' }).then(() => undefined, (e: Error) => e)
      expect(err).toMatchObject({ code: 'checksum_mismatch' })
      const written = await run('find', [join(root, 'images/other')]).then(r => r.stdout, () => '')
      expect(written).not.toContain(amd.layers[1].slice(7))
      expect(written).not.toContain('index.json')
    } finally {
      await writeFile(blob, good)
    }
    await p.close?.()
  })
})

describe.skipIf(skip !== undefined)('oci plug-in against docker-registry with Basic auth (htpasswd)', () => {
  let reg: TestRegistry
  let dir: string
  let image: BuiltImage

  beforeAll(async () => {
    reg = await TestRegistry.start({ basicAlice: true })
    dir = await mkdtemp(join(tmpdir(), 'staccato-oci-basic-'))
    image = await buildImage(dir, 'img', [{ files: { 'a.txt': 'basic' } }])
    await pushImage(reg, image, 'team/app', '1', 'alice:secret')
  }, 120_000)

  afterAll(async () => {
    await reg?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('answers a Basic challenge with the configured user, and refuses without or with a wrong one', async () => {
    const url = new URL(`oci://${reg.host}/team/app:1`)
    const plugin = (conf: object): OciPlugin => oci({ allowAddresses: ['loopback'], retries: 1, retryDelay: 10, registries: { [reg.host]: { insecure: true, ...conf } } })
    const right = plugin({ username: 'alice', password: 'secret' })
    expect(`sha256:${(await right.stat(url)).sha256 ?? ''}`).toBe(image.manifestDigest)
    const blob = await collect(right.read(new URL(`oci://${reg.host}/team/app@${image.layers[0]}`), { offset: 0 }))
    expect(sha256(blob)).toBe(image.layers[0])
    const none = plugin({})
    await expect(none.stat(url)).rejects.toMatchObject({ code: 'permission_denied', message: expect.stringContaining('has none') })
    const wrong = plugin({ username: 'alice', password: 'guess' })
    await expect(wrong.stat(url)).rejects.toMatchObject({ code: 'permission_denied', message: expect.stringContaining('do not give pull access') })
    for (const p of [right, none, wrong]) await p.close?.()
  })

  it('keeps to the address policy: a registry on loopback is refused unless allowed', async () => {
    const p = oci({ retries: 0, registries: { [reg.host]: { insecure: true, username: 'alice', password: 'secret' } } })
    await expect(p.stat(new URL(`oci://${reg.host}/team/app:1`))).rejects.toMatchObject({ code: 'address_refused' })
    await p.close?.()
  })
})
