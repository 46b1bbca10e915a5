import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestMesh } from '../helpers/mesh.ts'
import { runCli } from '../cli/helpers.ts'
import { TestRegistry, buildImage, pushImage, pushIndex, registryUnavailable } from '../helpers/registry.ts'
import type { BuiltImage } from '../helpers/registry.ts'

const run = promisify(execFile)
const skip = registryUnavailable()
if (skip !== undefined) console.warn(`skipping the oci end-to-end tests: ${skip}`)

const MiB = 1024 * 1024
// The big layer is random (gzip leaves it as large) and the agent reads at most 4 MiB/s: the registry can be killed mid-blob
// (16 MiB: more than loopback socket buffers hold, so the kill cuts the body short).
const BIG = 16 * MiB
const SLOW = ['--max-download-rate', '4MiB', '--sync-every', '1MiB']

interface Counters { bytesIn: Record<string, number> }

/**
 * Images from a real registry (docker-registry behind a Docker token realm)
 * into OCI layouts on agents, through a coordinator and agents as real
 * processes, checked with skopeo.
 */
describe.skipIf(skip !== undefined)('oci:// images into OCI layouts, end to end', () => {
  let reg: TestRegistry
  let mesh: TestMesh
  let amd: BuiltImage
  let arm: BuiltImage
  let big: BuiltImage

  async function registriesFile (name: string, creds?: { username: string, password: string }): Promise<string> {
    const path = join(mesh.dir, `${name}-registries.yml`)
    const entry = creds === undefined ? '{ insecure: true }' : `{ insecure: true, username: ${creds.username}, passwordFile: ./${name}.pw }`
    if (creds !== undefined) await writeFile(join(mesh.dir, `${name}.pw`), `${creds.password}\n`)
    await writeFile(path, `registries:\n  "${reg.host}": ${entry}\n`)
    return path
  }

  async function agentArgs (name: string, creds?: { username: string, password: string }, extra: string[] = []): Promise<string[]> {
    return ['--allow-address', 'loopback', '--registries-file', await registriesFile(name, creds), ...extra]
  }

  beforeAll(async () => {
    reg = await TestRegistry.start({ users: { alice: 'secret' }, publicRepos: ['pub/app', 'pub/big'] })
    mesh = await TestMesh.create()
    amd = await buildImage(mesh.dir, 'amd', [{ files: { 'a.txt': 'hello amd64' } }, { files: { 'b.bin': randomBytes(200_000) } }])
    arm = await buildImage(mesh.dir, 'arm', [{ files: { 'a.txt': 'hello arm64' } }], { os: 'linux', architecture: 'arm64' })
    big = await buildImage(mesh.dir, 'big', [{ files: { 'a.txt': 'small first' } }, { files: { 'big.bin': randomBytes(BIG) } }])
    for (const repo of ['pub/app', 'team/private']) {
      await pushImage(reg, amd, repo, '1.4', 'alice:secret')
      await pushImage(reg, arm, repo, '1.4-arm', 'alice:secret')
    }
    await pushIndex(reg, 'pub/app', 'multi', [{ image: amd, os: 'linux', architecture: 'amd64' }, { image: arm, os: 'linux', architecture: 'arm64' }], 'alice:secret')
    await pushImage(reg, big, 'pub/big', '1', 'alice:secret')
    await mesh.startCoordinator()
    await mesh.startAgent('c1', await agentArgs('c1', undefined, SLOW))
    await mesh.startAgent('c2', await agentArgs('c2', { username: 'alice', password: 'secret' }))
    await mesh.startAgent('c3', await agentArgs('c3', { username: 'alice', password: 'not-the-password' }))
  }, 240_000)

  afterAll(async () => {
    await mesh?.stop()
    await reg?.stop()
  })

  async function done (source: string, destination: string): Promise<Awaited<ReturnType<TestMesh['waitForState']>>> {
    const t = await mesh.submit(source, destination)
    return await mesh.waitForState(t.id, ['succeeded', 'failed'], 120_000)
  }

  async function inspect (dir: string): Promise<{ Digest: string, Architecture: string, Layers: string[] }> {
    const { stdout } = await run('/usr/bin/skopeo', ['inspect', `oci:${dir}`])
    return JSON.parse(stdout) as { Digest: string, Architecture: string, Layers: string[] }
  }

  it('writes an image as an OCI layout that skopeo inspects and copies', async () => {
    const t = await done(`oci://${reg.host}/pub/app:1.4`, 'agent://c1/vol/images/app/')
    expect(t.state, JSON.stringify(t)).toBe('succeeded')
    expect(`sha256:${t.sha256 ?? ''}`).toBe(amd.manifestDigest)
    const dir = join(mesh.volume('c1'), 'images/app')
    expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout'])
    const seen = await inspect(`${dir}:1.4`)
    expect(seen.Digest).toBe(amd.manifestDigest)
    expect(seen.Layers).toEqual(amd.layers)
    await run('/usr/bin/skopeo', ['copy', '--quiet', `oci:${dir}:1.4`, `oci:${join(mesh.dir, 'copied')}:again`])
    expect((await inspect(`${join(mesh.dir, 'copied')}:again`)).Layers).toEqual(amd.layers)
  })

  it('takes an image transfer from the CLI too', async () => {
    const env = { STACCATO_URL: mesh.ready.apiUrl, STACCATO_TOKEN: mesh.ready.apiToken, XDG_CONFIG_HOME: join(mesh.dir, 'cli-home') }
    const r = await runCli(['transfer', 'submit', `oci://${reg.host}/pub/app:1.4`, 'agent://c2/vol/images/cli/', '--wait'], env)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`succeeded  sha256 ${amd.manifestDigest.slice(7)}$`, 'm'))
    expect((await inspect(`${join(mesh.volume('c2'), 'images/cli')}:1.4`)).Digest).toBe(amd.manifestDigest)
  })

  it('picks the platform asked for from an image index', async () => {
    const t = await done(`oci://${reg.host}/pub/app:multi?platform=linux/arm64`, 'agent://c1/vol/images/multi/')
    expect(t.state, JSON.stringify(t)).toBe('succeeded')
    const seen = await inspect(`${join(mesh.volume('c1'), 'images/multi')}:multi`)
    expect(seen.Digest).toBe(arm.manifestDigest)
    expect(seen.Architecture).toBe('arm64')
    const missing = await done(`oci://${reg.host}/pub/app:multi?platform=linux/s390x`, 'agent://c1/vol/images/s390x/')
    expect(missing.state).toBe('failed')
    expect(missing.lastError).toMatchObject({ code: 'not_found', message: expect.stringContaining('linux/s390x') })
  })

  it('fails with not_found for a tag the registry does not have, leaving nothing', async () => {
    const t = await done(`oci://${reg.host}/pub/app:9.9`, 'agent://c1/vol/images/none/')
    expect(t.state).toBe('failed')
    expect(t.lastError).toMatchObject({ code: 'not_found' })
    expect(await readdir(join(mesh.volume('c1'), 'images/none')).catch(() => [])).toEqual([])
  })

  it('refuses a private repository without credentials and with wrong ones, never showing the password', async () => {
    const none = await done(`oci://${reg.host}/team/private:1.4`, 'agent://c1/vol/images/private/')
    expect(none.state).toBe('failed')
    expect(none.lastError).toMatchObject({ code: 'permission_denied', message: expect.stringContaining('has none') })
    const wrong = await done(`oci://${reg.host}/team/private:1.4`, 'agent://c3/vol/images/private/')
    expect(wrong.state).toBe('failed')
    expect(wrong.lastError).toMatchObject({ code: 'permission_denied' })
    const right = await done(`oci://${reg.host}/team/private:1.4`, 'agent://c2/vol/images/private/')
    expect(right.state, JSON.stringify(right)).toBe('succeeded')
    expect((await inspect(`${join(mesh.volume('c2'), 'images/private')}:1.4`)).Digest).toBe(amd.manifestDigest)
    const events = JSON.stringify((await mesh.api('GET', '/v1/events?limit=1000')).body)
    const logs = await Promise.all(['c2', 'c3', 'coordinator'].map(async n => await readFile(join(mesh.dir, 'logs', `${n}.log`), 'utf8')))
    for (const text of [JSON.stringify(wrong), JSON.stringify(right), events, ...logs]) {
      expect(text).not.toContain('not-the-password')
      expect(text).not.toContain('secret\n')
      expect(text).not.toContain(Buffer.from('alice:secret').toString('base64'))
    }
  })

  it('fails with checksum_mismatch when a blob in the registry does not match its digest, and writes no index', async () => {
    const blob = reg.blobFile(amd.layers[1])
    const good = await readFile(blob)
    const bad = Buffer.from(good)
    bad[bad.length >> 1] ^= 0xff
    await writeFile(blob, bad)
    try {
      const t = await done(`oci://${reg.host}/pub/app:1.4`, 'agent://c2/vol/images/tampered/')
      expect(t.state).toBe('failed')
      expect(t.lastError).toMatchObject({ code: 'checksum_mismatch' })
      const dir = join(mesh.volume('c2'), 'images/tampered')
      expect(await readdir(dir).catch(() => [])).not.toContain('index.json')
      expect(await readdir(join(dir, 'blobs/sha256')).catch(() => [])).not.toContain(amd.layers[1].slice(7))
    } finally {
      await writeFile(blob, good)
    }
  })

  it('continues a blob with Range when the registry dies mid-blob and comes back', async () => {
    const before = ((await (await fetch(mesh.agents.get('c1')?.info.statusUrl ?? '')).json()) as { counters: Counters }).counters.bytesIn.oci ?? 0
    const t = await mesh.submit(`oci://${reg.host}/pub/big:1`, 'agent://c1/vol/images/big/')
    await mesh.until(async () => (await mesh.transfer(t.id)).progress.bytesDone >= 2 * MiB, 60_000, 'two MiB of the big layer')
    await reg.restart()
    const end = await mesh.waitForState(t.id, ['succeeded', 'failed'], 120_000)
    expect(end.state, JSON.stringify(end)).toBe('succeeded')
    // Resumed within the same attempt, and every byte read from the registry once: no blob started over.
    expect(end.attempt).toBe(1)
    expect(await reg.log()).toMatch(new RegExp(`"GET /v2/pub/big/blobs/${big.layers[1]} HTTP/1.1" 206 `))
    const after = ((await (await fetch(mesh.agents.get('c1')?.info.statusUrl ?? '')).json()) as { counters: Counters }).counters.bytesIn.oci
    expect(after - before).toBe(end.progress.bytesDone - (await readFile(join(mesh.volume('c1'), 'images/big/blobs/sha256', big.manifestDigest.slice(7)))).length)
    expect((await inspect(`${join(mesh.volume('c1'), 'images/big')}:1`)).Digest).toBe(big.manifestDigest)
  })

  it('continues a blob from its journaled offset after the agent is killed mid-blob', async () => {
    const t = await mesh.submit(`oci://${reg.host}/pub/big:1`, 'agent://c1/vol/images/crash/')
    let kept = 0
    await mesh.until(async () => {
      kept = (await mesh.status('c1')).journal.find(e => e.transferId === t.id)?.durableOffset ?? 0
      return kept >= 3 * MiB
    }, 60_000, 'three MiB of the big layer journaled')
    await mesh.restartAgent('c1')
    const end = await mesh.waitForState(t.id, ['succeeded', 'failed'], 120_000)
    expect(end.state, JSON.stringify(end)).toBe('succeeded')
    expect(end.attempt).toBeGreaterThan(1)
    // The restarted agent read the big layer only from the kept offset on (its counters start at zero).
    const read = ((await (await fetch(mesh.agents.get('c1')?.info.statusUrl ?? '')).json()) as { counters: Counters }).counters.bytesIn.oci ?? 0
    const image = end.progress.bytesDone - (await readFile(join(mesh.volume('c1'), 'images/crash/blobs/sha256', big.manifestDigest.slice(7)))).length
    expect(read).toBeLessThanOrEqual(image - kept)
    expect((await reg.log()).match(new RegExp(`"GET /v2/pub/big/blobs/${big.layers[1]} HTTP/1.1" 206 `, 'g'))?.length).toBeGreaterThanOrEqual(2)
    expect((await inspect(`${join(mesh.volume('c1'), 'images/crash')}:1`)).Digest).toBe(big.manifestDigest)
  })
})
