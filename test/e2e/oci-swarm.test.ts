import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestMesh } from '../helpers/mesh.ts'
import { freePort } from '../../cli/index.ts'
import { runCli } from '../cli/helpers.ts'
import { TestRegistry, buildImage, pushImage, pushIndex, registryUnavailable } from '../helpers/registry.ts'
import type { BuiltImage } from '../helpers/registry.ts'

const run = promisify(execFile)
const skip = registryUnavailable()
if (skip !== undefined) console.warn(`skipping the oci swarm end-to-end tests: ${skip}`)

const KiB = 1024
// Small pieces (the coordinator's minimum is 64 KiB) so that pieces span blobs: the config and the small layer share the first piece.
const PIECE = 256 * KiB

interface Distribution {
  id: string
  state: string
  sha256?: string
  source: string
  manifest?: { image?: { digest: string, registryBytes?: number, blobs: Array<{ digest: string, size: number }> } }
  destinations: Array<{ agent: string, state: string, bytesDone: number, sha256?: string, lastError?: { code: string, message: string } }>
}
interface Status { counters: { bytesReceived: number, bytesIn: Record<string, number>, swarmPeersDropped: number, mirrorBytesServed: number, mirrorBytesServedArriving: number } }

/**
 * An image from a real registry to several agents' OCI layouts through the
 * swarm: only the seed reads the registry, each blob once; a blob an agent
 * already holds is not fetched again. The tests run in order on one mesh
 * and build on each other (the mirror's warm pull serves what the first
 * distribution left in the seed's store): run the file, not one test.
 */
describe.skipIf(skip !== undefined)('oci:// images through the swarm, by blob', () => {
  let reg: TestRegistry
  let mesh: TestMesh
  let img: BuiltImage
  let cold: BuiltImage
  let blobBytes: number
  let mirror: string
  let pre: BuiltImage
  let preMirror: string

  beforeAll(async () => {
    reg = await TestRegistry.start()
    mesh = await TestMesh.create()
    img = await buildImage(mesh.dir, 'app', [{ files: { 'a.txt': 'hello' } }, { files: { 'big.bin': randomBytes(1536 * KiB) } }, { files: { 'c.bin': randomBytes(300 * KiB) } }])
    await pushImage(reg, img, 'pub/app', '1')
    cold = await buildImage(mesh.dir, 'cold', [{ files: { 'c.bin': randomBytes(700 * KiB) } }])
    await pushImage(reg, cold, 'pub/cold', '1')
    await pushImage(reg, cold, 'team/secret', '1')
    pre = await buildImage(mesh.dir, 'pre', [{ files: { 'p.bin': randomBytes(600 * KiB) } }, { files: { 'q.txt': 'preheated' } }])
    await pushImage(reg, pre, 'pub/pre', '1')
    const layout = join(mesh.dir, 'layout-app', 'blobs', 'sha256')
    blobBytes = 0
    for (const d of [img.config, ...img.layers]) blobBytes += (await stat(join(layout, d.slice(7)))).size
    await mesh.startCoordinator(['--piece-size', `${PIECE}`])
    const registries = join(mesh.dir, 'registries.yml')
    await writeFile(registries, `registries:\n  "${reg.host}": { insecure: true }\n`)
    // Only r1 may reach the registry (loopback is refused to the others): the destinations get every byte from the swarm.
    mirror = `127.0.0.1:${await freePort()}`
    await mesh.startAgent('r1', ['--allow-address', 'loopback', '--registries-file', registries, '--registry-mirror', mirror, '--mirror-image', `${reg.host}/pub/*`])
    for (const d of ['d1', 'd2', 'd3']) await mesh.startAgent(d)
    // A host whose mirror may reach the registry (for manifests) but should not need to for blobs once preheated.
    preMirror = `127.0.0.1:${await freePort()}`
    await mesh.startAgent('h1', ['--allow-address', 'loopback', '--registries-file', registries, '--registry-mirror', preMirror, '--mirror-image', `${reg.host}/pub/*`])
  }, 240_000)

  afterAll(async () => {
    await mesh?.stop()
    await reg?.stop()
  })

  async function distribute (destinations: string[], image = 'pub/app:1'): Promise<Distribution> {
    const res = await mesh.api('POST', '/v1/transfers', { source: `oci://${reg.host}/${image}?via=r1`, destinations })
    expect(res.status, JSON.stringify(res.body)).toBe(201)
    return await mesh.waitForState((res.body as Distribution).id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
  }

  async function status (name: string): Promise<Status> {
    return await mesh.status(name) as unknown as Status
  }

  async function inspect (dir: string): Promise<{ Digest: string, Layers: string[] }> {
    const { stdout } = await run('/usr/bin/skopeo', ['inspect', `oci:${dir}`])
    return JSON.parse(stdout) as { Digest: string, Layers: string[] }
  }

  it('writes the image into every destination\'s layout, the registry read once per blob', async () => {
    const done = await distribute(['agent://d1/vol/images/app/', 'agent://d2/vol/images/app/'])
    expect(done.state, JSON.stringify(done)).toBe('succeeded')
    expect(`sha256:${done.sha256 ?? ''}`).toBe(img.manifestDigest)
    expect(done.destinations.map(d => d.sha256)).toEqual([img.manifestDigest.slice(7), img.manifestDigest.slice(7)])
    for (const d of ['d1', 'd2']) {
      const dir = join(mesh.volume(d), 'images/app')
      expect((await readdir(dir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout'])
      // Only whole blobs, no partial left behind.
      expect((await readdir(join(dir, 'blobs/sha256'))).sort()).toEqual([img.config, ...img.layers, img.manifestDigest].map(x => x.slice(7)).sort())
      const seen = await inspect(`${dir}:1`)
      expect(seen.Digest).toBe(img.manifestDigest)
      expect(seen.Layers).toEqual(img.layers)
      expect((await status(d)).counters.bytesIn.oci ?? 0).toBe(0)
    }
    await run('/usr/bin/skopeo', ['copy', '--quiet', `oci:${join(mesh.volume('d2'), 'images/app')}:1`, `oci:${join(mesh.dir, 'copied')}:again`])
    expect((await status('r1')).counters.bytesIn.oci).toBe(blobBytes)
    // The record says what the distribution cost the registry, and what the image is made of.
    expect(done.manifest?.image?.registryBytes).toBe(blobBytes)
    expect(done.manifest?.image?.blobs.map(b => b.digest)).toEqual([img.config, ...img.layers])
  })

  it('seeds an image distribution given without ?via= on the agent that seeded the image last, and shows its egress and blobs in transfer show', async () => {
    const res = await mesh.api('POST', '/v1/transfers', { source: `oci://${reg.host}/pub/app:1`, destinations: ['agent://d2/vol/novia/app/'] })
    expect(res.status, JSON.stringify(res.body)).toBe(201)
    const created = res.body as Distribution
    expect(new URL(created.source).searchParams.get('via')).toBe('r1')
    const done = await mesh.waitForState(created.id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
    expect(done.state, JSON.stringify(done)).toBe('succeeded')
    // r1 held every blob in its store: nothing read from the registry this time.
    expect(done.manifest?.image?.registryBytes).toBe(0)
    const env = { STACCATO_URL: mesh.ready.apiUrl, STACCATO_TOKEN: mesh.ready.apiToken, XDG_CONFIG_HOME: join(mesh.dir, 'cli-home') }
    const shown = await runCli(['transfer', 'show', created.id], env)
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.stdout).toMatch(/^registry: +0 B read from the registry \(0\.00 × the image\)$/m)
    const blobs = done.manifest?.image?.blobs ?? []
    expect(blobs.length).toBe(1 + img.layers.length)
    for (const b of blobs) expect(shown.stdout).toContain(`  d2  ${b.digest.slice(0, 19)}…  `)
    const swarm = (await mesh.api('GET', `/v1/transfers/${created.id}/swarm`)).body as { participants: Array<{ agent: string, blobs?: number[] }> }
    expect(swarm.participants.find(p => p.agent === 'd2')?.blobs).toEqual(blobs.map(b => b.size))
  })

  it('does not fetch again a blob a host already holds, in any layout', async () => {
    const before = { r1: (await status('r1')).counters.bytesIn.oci, d1: (await status('d1')).counters.bytesReceived }
    const done = await distribute(['agent://d1/vol/other/app/', 'agent://d3/vol/images/app/'])
    expect(done.state, JSON.stringify(done)).toBe('succeeded')
    expect((await inspect(`${join(mesh.volume('d1'), 'other/app')}:1`)).Digest).toBe(img.manifestDigest)
    expect((await inspect(`${join(mesh.volume('d3'), 'images/app')}:1`)).Layers).toEqual(img.layers)
    // The seed kept every blob in its store; d1 copied them from its first layout; d3 got them from the swarm.
    expect((await status('r1')).counters.bytesIn.oci).toBe(before.r1)
    expect((await status('d1')).counters.bytesReceived).toBe(before.d1)
    expect((await status('d3')).counters.bytesReceived).toBeGreaterThanOrEqual(blobBytes)
  })

  async function pull (repo: string, dir: string): Promise<void> {
    await run('/usr/bin/skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${mirror}/${repo}`, `oci:${dir}:pulled`])
  }

  it('serves a pull through the agent\'s registry mirror from the blobs it holds, with HEAD and Range', async () => {
    const before = (await status('r1')).counters.bytesIn.oci
    const dir = join(mesh.dir, 'pulled-warm')
    await pull('pub/app:1', dir)
    const seen = await inspect(`${dir}:pulled`)
    expect(seen.Digest).toBe(img.manifestDigest)
    expect(seen.Layers).toEqual(img.layers)
    // Every blob came from the agent's store: the registry was asked for the manifest only.
    expect((await status('r1')).counters.bytesIn.oci).toBe(before)
    const big = img.layers[1]
    const whole = await readFile(join(mesh.dir, 'layout-app', 'blobs', 'sha256', big.slice(7)))
    const head = await fetch(`http://${mirror}/v2/pub/app/blobs/${big}`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(Number(head.headers.get('content-length'))).toBe(whole.length)
    expect(head.headers.get('docker-content-digest')).toBe(big)
    const part = await fetch(`http://${mirror}/v2/pub/app/blobs/${big}`, { headers: { range: 'bytes=1000-4999' } })
    expect(part.status).toBe(206)
    expect(part.headers.get('content-range')).toBe(`bytes 1000-4999/${whole.length}`)
    expect(Buffer.from(await part.arrayBuffer()).equals(whole.subarray(1000, 5000))).toBe(true)
    const v2 = await fetch(`http://${mirror}/v2/`)
    expect(v2.status).toBe(200)
    // As containerd asks (hosts.toml mirror): HEAD of the manifest, the upstream named in ?ns=.
    const m = await fetch(`http://${mirror}/v2/pub/app/manifests/1?ns=${reg.host}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    expect(m.status).toBe(200)
    expect(m.headers.get('docker-content-digest')).toBe(img.manifestDigest)
    expect(m.headers.get('content-type')).toBe('application/vnd.oci.image.manifest.v1+json')
    expect((await fetch(`http://${mirror}/v2/pub/app/manifests/1?ns=elsewhere.example`)).status).toBe(403)
  })

  it('fetches a blob it lacks from the registry once, streaming it to the client, and keeps it', async () => {
    const before = (await status('r1')).counters.bytesIn.oci
    const coldBytes = (await stat(join(mesh.dir, 'layout-cold', 'blobs', 'sha256', cold.layers[0].slice(7)))).size + (await stat(join(mesh.dir, 'layout-cold', 'blobs', 'sha256', cold.config.slice(7)))).size
    await pull('pub/cold:1', join(mesh.dir, 'pulled-cold'))
    expect((await inspect(`${join(mesh.dir, 'pulled-cold')}:pulled`)).Layers).toEqual(cold.layers)
    expect((await status('r1')).counters.bytesIn.oci).toBe(before + coldBytes)
    await pull('pub/cold:1', join(mesh.dir, 'pulled-cold-again'))
    expect((await status('r1')).counters.bytesIn.oci).toBe(before + coldBytes)
  })

  it('refuses an image it may not mirror, with the registry API\'s DENIED', async () => {
    const err = await pull('team/secret:1', join(mesh.dir, 'pulled-denied')).then(() => undefined, (e: Error & { stderr?: string }) => e)
    expect(err?.stderr ?? '').toMatch(/denied|not an image this agent mirrors/i)
    const res = await fetch(`http://${mirror}/v2/team/secret/manifests/1`)
    expect(res.status).toBe(403)
    expect(((await res.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('DENIED')
    await expect(readdir(join(mesh.dir, 'pulled-denied', 'blobs', 'sha256')).then(f => f.length, () => 0)).resolves.toBe(0)
  })

  it('preheats an image from the CLI, so that the first pull through a host\'s mirror reads no blob from the registry', async () => {
    const env = { STACCATO_URL: mesh.ready.apiUrl, STACCATO_TOKEN: mesh.ready.apiToken, XDG_CONFIG_HOME: join(mesh.dir, 'cli-home') }
    const r = await runCli(['image', 'preheat', `oci://${reg.host}/pub/pre:1`, '--agent', 'h1', '--agent', 'd1', '--via', 'r1', '--wait'], env)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`succeeded  sha256 ${pre.manifestDigest.slice(7)}$`, 'm'))
    expect((await inspect(`${join(mesh.volume('d1'), 'preheat', reg.host.replace(':', '_'), 'pub/pre')}:1`)).Digest).toBe(pre.manifestDigest)
    const dir = join(mesh.dir, 'pulled-preheated')
    await run('/usr/bin/skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${preMirror}/pub/pre:1`, `oci:${dir}:pulled`])
    expect((await inspect(`${dir}:pulled`)).Layers).toEqual(pre.layers)
    expect((await status('h1')).counters.bytesIn.oci ?? 0).toBe(0)
  })

  it('fails with not_found for a tag the registry lacks, and with checksum_mismatch for a tampered blob, leaving no layout and no blob', async () => {
    const missing = await distribute(['agent://d2/vol/missing/'], 'pub/app:nope')
    expect(missing.state).toBe('failed')
    expect(missing.destinations[0].lastError?.code ?? (missing as unknown as { lastError?: { code: string } }).lastError?.code).toBe('not_found')
    expect(await readdir(join(mesh.volume('d2'), 'missing')).catch(() => [])).toEqual([])
    const bad = await buildImage(mesh.dir, 'bad', [{ files: { 'x.bin': randomBytes(100 * KiB) } }])
    await pushImage(reg, bad, 'pub/bad', '1')
    const blob = reg.blobFile(bad.layers[0])
    const bytes = await readFile(blob)
    bytes[bytes.length >> 1] ^= 0xff
    await writeFile(blob, bytes)
    const t = await distribute(['agent://d2/vol/bad/'], 'pub/bad:1')
    expect(t.state).toBe('failed')
    expect((t as unknown as { lastError?: { code: string } }).lastError?.code).toBe('checksum_mismatch')
    expect(await readdir(join(mesh.volume('d2'), 'bad')).catch(() => [])).toEqual([])
    // The seed kept nothing of it either (no copy, no leftover partial): nothing would serve that layer from a bad copy.
    const store = await readdir(join(mesh.dir, 'agents', 'r1', 'blobs', 'sha256'))
    expect(store).toContain(img.layers[1].slice(7))
    expect(store.filter(f => f.startsWith(bad.layers[0].slice(7)))).toEqual([])
  })

  it('fails with not_found for a platform the image index lacks, and the mirror answers a missing tag with the registry API\'s 404, leaving nothing', async () => {
    await pushIndex(reg, 'pub/app', 'multi', [{ image: img, os: 'linux', architecture: 'amd64' }])
    const res0 = await mesh.api('POST', '/v1/transfers', { source: `oci://${reg.host}/pub/app:multi?platform=linux/s390x&via=r1`, destinations: ['agent://d2/vol/s390x/'] })
    expect(res0.status, JSON.stringify(res0.body)).toBe(201)
    const t = await mesh.waitForState((res0.body as Distribution).id, ['succeeded', 'failed', 'canceled'], 120_000)
    expect(t.state).toBe('failed')
    expect((t as unknown as { lastError?: { code: string, message: string } }).lastError).toMatchObject({ code: 'not_found', message: expect.stringContaining('linux/s390x') })
    expect(await readdir(join(mesh.volume('d2'), 's390x')).catch(() => [])).toEqual([])
    const res = await fetch(`http://${mirror}/v2/pub/app/manifests/nope`)
    expect(res.status).toBe(404)
    expect(((await res.json()) as { errors: Array<{ code: string }> }).errors[0].code).toBe('NAME_UNKNOWN')
  })

  it('resumes an image destination killed mid-distribution from its journal, keeping the blobs\' partials', async () => {
    const big = await buildImage(mesh.dir, 'resume', [{ files: { 'r.bin': randomBytes(4096 * KiB) } }, { files: { 's.txt': 'small' } }])
    await pushImage(reg, big, 'pub/resume', '1')
    // Slow enough (1 MiB/s) that the kill comes mid-way.
    await mesh.startAgent('d4', ['--max-download-rate', '1MiB'])
    const res = await mesh.api('POST', '/v1/transfers', { source: `oci://${reg.host}/pub/resume:1?via=r1`, destinations: ['agent://d4/vol/images/resume/', 'agent://d1/vol/images/resume/'] })
    expect(res.status).toBe(201)
    const id = (res.body as Distribution).id
    await mesh.until(async () => {
      const t = await mesh.transfer(id) as unknown as Distribution
      return (t.destinations.find(x => x.agent === 'd4')?.bytesDone ?? 0) >= 1024 * KiB
    }, 60_000, 'a quarter of the image at d4')
    await mesh.kill('d4')
    await mesh.restartAgent('d4')
    const done = await mesh.waitForState(id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
    expect(done.state, JSON.stringify(done)).toBe('succeeded')
    const dir = join(mesh.volume('d4'), 'images/resume')
    expect((await inspect(`${dir}:1`)).Layers).toEqual(big.layers)
    expect((await readdir(join(dir, 'blobs/sha256'))).sort()).toEqual([big.config, ...big.layers, big.manifestDigest].map(x => x.slice(7)).sort())
    // The restarted agent fetched only what its journal did not hold.
    expect((await status('d4')).counters.bytesReceived).toBeLessThan(4096 * KiB)
  })

  it('serves through the mirror the blobs of a layout a plain image transfer wrote on that agent', async () => {
    const solo = await buildImage(mesh.dir, 'solo', [{ files: { 's.bin': randomBytes(300 * KiB) } }])
    await pushImage(reg, solo, 'pub/solo', '1')
    const t = await mesh.submit(`oci://${reg.host}/pub/solo:1`, 'agent://h1/vol/images/solo/')
    expect((await mesh.waitForState(t.id, ['succeeded', 'failed'], 120_000)).state).toBe('succeeded')
    const before = (await status('h1')).counters.bytesIn.oci
    const dir = join(mesh.dir, 'pulled-solo')
    await run('/usr/bin/skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${preMirror}/pub/solo:1`, `oci:${dir}:pulled`])
    expect((await inspect(`${dir}:pulled`)).Layers).toEqual(solo.layers)
    expect((await status('h1')).counters.bytesIn.oci).toBe(before)
  })

  it('shares a cold pull on several hosts at once through one distribution: the registry read once per blob', async () => {
    const wave = await buildImage(mesh.dir, 'wave', [{ files: { 'w.bin': randomBytes(1024 * KiB) } }, { files: { 'v.bin': randomBytes(200 * KiB) } }])
    await pushImage(reg, wave, 'pub/wave', '1')
    const layout = join(mesh.dir, 'layout-wave', 'blobs', 'sha256')
    let waveBytes = 0
    for (const d of [wave.config, ...wave.layers]) waveBytes += (await stat(join(layout, d.slice(7)))).size
    const registries = join(mesh.dir, 'registries.yml')
    const mirrors: Record<string, string> = {}
    for (const w of ['w1', 'w2', 'w3']) {
      mirrors[w] = `127.0.0.1:${await freePort()}`
      await mesh.startAgent(w, ['--allow-address', 'loopback', '--registries-file', registries, '--registry-mirror', mirrors[w], '--mirror-image', `${reg.host}/pub/*`])
    }
    await Promise.all(Object.entries(mirrors).map(async ([w, m]) => {
      await run('/usr/bin/skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${m}/pub/wave:1`, `oci:${join(mesh.dir, `pulled-wave-${w}`)}:pulled`])
    }))
    for (const w of Object.keys(mirrors)) expect((await inspect(`${join(mesh.dir, `pulled-wave-${w}`)}:pulled`)).Layers).toEqual(wave.layers)
    let egress = 0
    for (const w of Object.keys(mirrors)) egress += (await status(w)).counters.bytesIn.oci ?? 0
    // Without sharing each host reads every blob: 3 × the image.
    expect(egress).toBe(waveBytes)
  })

  async function sizeOf (image: BuiltImage, name: string): Promise<number> {
    let n = 0
    for (const d of [image.config, ...image.layers]) n += (await stat(join(mesh.dir, `layout-${name}`, 'blobs', 'sha256', d.slice(7)))).size
    return n
  }

  it('streams a cold pull to the client piece by piece while the shared distribution is still bringing the blob', async () => {
    const stream = await buildImage(mesh.dir, 'stream', [{ files: { 'big.bin': randomBytes(3 * 1024 * KiB) } }])
    await pushImage(reg, stream, 'pub/stream', '1')
    const registries = join(mesh.dir, 'registries.yml')
    const mirrors: Record<string, string> = {}
    for (const c of ['c1', 'c2']) {
      mirrors[c] = `127.0.0.1:${await freePort()}`
      // 2 MiB/s into each host: the layer takes over a second to arrive through the swarm, so its first pieces land well before it commits.
      await mesh.startAgent(c, ['--allow-address', 'loopback', '--registries-file', registries, '--registry-mirror', mirrors[c], '--mirror-image', `${reg.host}/pub/*`, '--max-download-rate', '2MiB'])
    }
    await Promise.all(Object.entries(mirrors).map(async ([c, m]) => {
      await run('/usr/bin/skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${m}/pub/stream:1`, `oci:${join(mesh.dir, `pulled-stream-${c}`)}:pulled`])
    }))
    for (const c of Object.keys(mirrors)) expect((await inspect(`${join(mesh.dir, `pulled-stream-${c}`)}:pulled`)).Layers).toEqual(stream.layers)
    let egress = 0
    let early = 0
    for (const c of Object.keys(mirrors)) {
      const { counters } = await status(c)
      egress += counters.bytesIn.oci ?? 0
      early += counters.mirrorBytesServedArriving
    }
    expect(egress).toBe(await sizeOf(stream, 'stream'))
    // The destination's mirror sent verified pieces of the layer before the layer committed (0 when it waited for the whole image).
    expect(early).toBeGreaterThan(0)
  })

  it('serves a blob still arriving through a preheat, Range included, and never a piece that failed verification', async () => {
    const hot = await buildImage(mesh.dir, 'hot', [{ files: { 'h.bin': randomBytes(4 * 1024 * KiB) } }])
    await pushImage(reg, hot, 'pub/hot', '1')
    const whole = await readFile(join(mesh.dir, 'layout-hot', 'blobs', 'sha256', hot.layers[0].slice(7)))
    const registries = join(mesh.dir, 'registries.yml')
    const m1 = `127.0.0.1:${await freePort()}`
    await mesh.startAgent('m1', ['--allow-address', 'loopback', '--registries-file', registries, '--registry-mirror', m1, '--mirror-image', `${reg.host}/pub/*`, '--max-download-rate', '2MiB', '--label', 'pool=hot'])
    // A peer whose every served piece has a byte flipped: m1 gets some pieces from it, checks them and drops it.
    await mesh.startAgent('bad', ['--label', 'pool=hot'], {}, { faults: 'corrupt-pieces' })
    // Preheat by labels: the agents labelled pool=hot, whichever they are.
    const res = await mesh.api('POST', '/v1/images/preheat', { image: `oci://${reg.host}/pub/hot:1`, labels: { pool: 'hot' }, via: 'r1' })
    expect(res.status, JSON.stringify(res.body)).toBe(201)
    const id = (res.body as Distribution).id
    expect((res.body as Distribution).destinations.map(d => d.agent)).toEqual(['bad', 'm1'])
    await mesh.until(async () => {
      const t = await mesh.transfer(id) as unknown as Distribution
      return (t.destinations.find(x => x.agent === 'm1')?.bytesDone ?? 0) > 0
    }, 60_000, 'the first pieces at m1')
    const part = await fetch(`http://${m1}/v2/pub/hot/blobs/${hot.layers[0]}`, { headers: { range: 'bytes=100-199999' } })
    expect(part.status).toBe(206)
    expect(part.headers.get('content-range')).toBe(`bytes 100-199999/${whole.length}`)
    expect(Buffer.from(await part.arrayBuffer()).equals(whole.subarray(100, 200000))).toBe(true)
    const dir = join(mesh.dir, 'pulled-hot')
    // skopeo checks every blob against its digest: one corrupt byte sent would fail the pull.
    await run('/usr/bin/skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${m1}/pub/hot:1`, `oci:${dir}:pulled`])
    expect((await inspect(`${dir}:pulled`)).Layers).toEqual(hot.layers)
    const done = await mesh.waitForState(id, ['succeeded', 'failed', 'canceled'], 120_000) as unknown as Distribution
    expect(done.state).toBe('succeeded')
    const { counters } = await status('m1')
    expect(counters.swarmPeersDropped).toBeGreaterThanOrEqual(1)
    expect(counters.mirrorBytesServedArriving).toBeGreaterThan(0)
    expect(counters.bytesIn.oci ?? 0).toBe(0)
  })

  it('joins a pull to the preheat already bringing the image to that host, rather than reading the registry again', async () => {
    const warm = await buildImage(mesh.dir, 'during', [{ files: { 'd.bin': randomBytes(3 * 1024 * KiB) } }])
    await pushImage(reg, warm, 'pub/during', '1')
    const registries = join(mesh.dir, 'registries.yml')
    const m2 = `127.0.0.1:${await freePort()}`
    await mesh.startAgent('m2', ['--allow-address', 'loopback', '--registries-file', registries, '--registry-mirror', m2, '--mirror-image', `${reg.host}/pub/*`, '--max-download-rate', '2MiB'])
    const before = (await status('r1')).counters.bytesIn.oci ?? 0
    const res = await mesh.api('POST', '/v1/images/preheat', { image: `oci://${reg.host}/pub/during:1`, agents: ['m2'], via: 'r1' })
    expect(res.status, JSON.stringify(res.body)).toBe(201)
    // At once: the preheat has not reached m2 yet when its mirror misses the first blob.
    const dir = join(mesh.dir, 'pulled-during')
    await run('/usr/bin/skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${m2}/pub/during:1`, `oci:${dir}:pulled`])
    expect((await inspect(`${dir}:pulled`)).Layers).toEqual(warm.layers)
    const done = await mesh.waitForState((res.body as Distribution).id, ['succeeded', 'failed', 'canceled'], 120_000)
    expect(done.state).toBe('succeeded')
    // The registry read once, by the preheat's seed; m2 read no blob (without joining it, m2 seeded a second distribution itself).
    expect((await status('m2')).counters.bytesIn.oci ?? 0).toBe(0)
    expect(((await status('r1')).counters.bytesIn.oci ?? 0) - before).toBe(await sizeOf(warm, 'during'))
  })
})
