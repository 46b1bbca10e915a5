import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile, mkdir, readdir, readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { TestMesh, sha256File } from '../helpers/mesh.ts'
import { freePort } from '../../cli/processes.ts'
import { runCli } from './helpers.ts'

const MiB = 1024 * 1024

describe('staccato transfer / agents against a real mesh', () => {
  let mesh: TestMesh
  let home: string
  let env: Record<string, string>

  beforeAll(async () => {
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('compute-1')])
    home = await mkdtemp(join(tmpdir(), 'staccato-cli-home-'))
    env = { STACCATO_URL: mesh.ready.apiUrl, STACCATO_TOKEN: mesh.ready.apiToken, XDG_CONFIG_HOME: home }
    await writeFile(join(mesh.volume('store-1'), 'a.bin'), randomBytes(24 * MiB))
  })
  afterAll(async () => {
    await mesh?.stop()
    if (home !== undefined) await rm(home, { recursive: true, force: true })
  })

  it('submits with --wait, prints progress lines (no TTY) and exits 0 once the copy succeeded', async () => {
    const r = await runCli(['transfer', 'submit', 'agent://store-1/vol/a.bin', 'agent://compute-1/vol/a.bin', '--wait', '--label', 'run=cli'], env)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const id = /^submitted (tr_\S+)$/m.exec(r.stdout)?.[1]
    expect(id).toBeDefined()
    // One line per update; the last update shows all bytes of the known total.
    expect(r.stdout).toMatch(new RegExp(`^${id}  succeeded\\s+24\\.0 MiB / 24\\.0 MiB \\(100%\\)$`, 'm'))
    expect(r.stdout).toMatch(new RegExp(`^${id}  succeeded  sha256 [0-9a-f]{64}$`, 'm'))
    expect(await sha256File(join(mesh.volume('compute-1'), 'a.bin'))).toBe(await sha256File(join(mesh.volume('store-1'), 'a.bin')))
  })

  it('copies a tree with --sync and --exclude, showing its files on the progress line; a re-run copies none', async () => {
    const tree = join(mesh.volume('store-1'), 'tree')
    await mkdir(join(tree, 'sub'), { recursive: true })
    await writeFile(join(tree, 'one.txt'), 'one')
    await writeFile(join(tree, 'sub', 'two.txt'), 'two')
    await writeFile(join(tree, 'sub', 'scratch.tmp'), 'left out')
    const args = ['transfer', 'submit', 'agent://store-1/vol/tree/', 'agent://compute-1/vol/tree/', '--sync', 'mtime', '--exclude', '*.tmp', '--wait']
    const r = await runCli(args, env)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/succeeded .*files 2 copied, 0 skipped, 0 failed of 2/)
    expect((await readdir(join(mesh.volume('compute-1'), 'tree'), { recursive: true })).sort()).toEqual(['one.txt', 'sub', 'sub/two.txt'])
    const again = await runCli(args, env)
    expect(again.code).toBe(0)
    expect(again.stdout).toMatch(/succeeded .*files 0 copied, 2 skipped, 0 failed of 2/)
    const bad = await runCli(['transfer', 'submit', 'agent://store-1/vol/tree/', 'agent://compute-1/vol/x/', '--sync', 'sometimes'], env)
    expect(bad.code).toBe(2)
    const badLinks = await runCli(['transfer', 'submit', 'agent://store-1/vol/tree/', 'agent://compute-1/vol/x/', '--links', 'follow'], env)
    expect(badLinks.code).toBe(2)
    expect(badLinks.stderr).toBe('staccato: --links must be skip or copy\n')
    // --links copy reaches the record and shows in `transfer show`.
    const linked = await runCli(['transfer', 'submit', 'agent://store-1/vol/tree/', 'agent://compute-1/vol/tree-links/', '--links', 'copy', '--wait'], env)
    expect(linked.code).toBe(0)
    const linkedId = /^submitted (tr_\S+)$/m.exec(linked.stdout)?.[1] ?? ''
    expect((await runCli(['transfer', 'show', linkedId], env)).stdout).toMatch(/^sync: +mtime, links copied$/m)
    const id = /^submitted (tr_\S+)$/m.exec(again.stdout)?.[1] ?? ''
    const files = await runCli(['transfer', 'files', id, '--state', 'skipped'], env)
    expect(files.code).toBe(0)
    expect(files.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^skipped +3 B {2}one\.txt {2}\(unchanged \(sync mtime\)\)$/),
      expect.stringMatching(/^skipped +3 B {2}sub\/two\.txt {2}\(unchanged \(sync mtime\)\)$/)
    ])
  })

  it('mirrors a tree with --delete-extra; --dry-run first lists what would change and changes nothing', async () => {
    const tree = join(mesh.volume('store-1'), 'mirrored')
    const dst = join(mesh.volume('compute-1'), 'mirrored')
    await mkdir(tree, { recursive: true })
    await mkdir(dst, { recursive: true })
    await writeFile(join(tree, 'kept.txt'), 'kept')
    await writeFile(join(dst, 'stale.txt'), 'stale')
    const args = ['transfer', 'submit', 'agent://store-1/vol/mirrored/', 'agent://compute-1/vol/mirrored/', '--delete-extra', '--wait']
    const dry = await runCli([...args, '--dry-run'], env)
    expect(dry.code).toBe(0)
    // The summary says what the dry run found, not only what it did (nothing).
    expect(dry.stdout).toMatch(/succeeded .*files 0 copied, 0 skipped, 0 failed of 1 \(dry run: 1 would be copied, 1 would be deleted; nothing changed\)/)
    expect((await readdir(dst)).sort()).toEqual(['stale.txt'])
    const dryId = /^submitted (tr_\S+)$/m.exec(dry.stdout)?.[1] ?? ''
    const listed = await runCli(['transfer', 'files', dryId], env)
    expect(listed.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^would-copy +4 B {2}kept\.txt$/),
      expect.stringMatching(/^would-delete +5 B {2}stale\.txt$/)
    ])
    const real = await runCli(args, env)
    expect(real.code).toBe(0)
    expect(real.stdout).toMatch(/succeeded .*files 1 copied, 0 skipped, 0 failed of 1, 1 deleted/)
    expect((await readdir(dst)).sort()).toEqual(['kept.txt'])
    const id = /^submitted (tr_\S+)$/m.exec(real.stdout)?.[1] ?? ''
    const deleted = await runCli(['transfer', 'files', id, '--state', 'deleted'], env)
    expect(deleted.stdout).toMatch(/^deleted +5 B {2}stale\.txt$/m)
  })

  it('prints only JSON with --json, which a script can parse', async () => {
    const r = await runCli(['transfer', 'submit', 'agent://store-1/vol/a.bin', 'agent://compute-1/vol/b.bin', '--wait', '--json', '--priority', '3'], env)
    expect(r.code).toBe(0)
    const t = JSON.parse(r.stdout) as { id: string, state: string, priority: number, sha256: string }
    expect(t.state).toBe('succeeded')
    expect(t.priority).toBe(3)
    expect(t.sha256).toBe(await sha256File(join(mesh.volume('store-1'), 'a.bin')))

    const list = await runCli(['transfer', 'list', '--json', '--state', 'succeeded'], env)
    expect(list.code).toBe(0)
    const ids = (JSON.parse(list.stdout) as { items: Array<{ id: string }> }).items.map(i => i.id)
    expect(ids).toContain(t.id)

    const labelled = await runCli(['transfer', 'list', '--json', '--label', 'run=cli'], env)
    const items = (JSON.parse(labelled.stdout) as { items: Array<{ id: string, labels: Record<string, string> }> }).items
    expect(items.length).toBeGreaterThan(0)
    expect(items.every(i => i.labels.run === 'cli')).toBe(true)
    expect(items.map(i => i.id)).not.toContain(t.id)

    const shown = await runCli(['transfer', 'show', t.id], env)
    expect(shown.code).toBe(0)
    expect(shown.stdout).toMatch(/^state:\s+succeeded$/m)
    expect(shown.stdout).toContain(`sha256:      ${t.sha256}`)

    const removed = await runCli(['transfer', 'rm', t.id], env)
    expect(removed.code).toBe(0)
    expect((await mesh.api('GET', `/v1/transfers/${t.id}`)).status).toBe(404)
  })

  it('sends --streams with the transfer and shows it; refuses a count out of range before asking the coordinator', async () => {
    const r = await runCli(['transfer', 'submit', 'agent://store-1/vol/a.bin', 'agent://compute-1/vol/streams.bin', '--wait', '--json', '--streams', '3'], env)
    expect(r.code, r.stderr).toBe(0)
    const t = JSON.parse(r.stdout) as { id: string, state: string, streams: number }
    expect(t).toMatchObject({ state: 'succeeded', streams: 3 })
    const shown = await runCli(['transfer', 'show', t.id], env)
    expect(shown.stdout).toMatch(/^streams:\s+3$/m)
    const bad = await runCli(['transfer', 'submit', 'a', 'b', '--streams', '17'], env)
    expect(bad.code).toBe(2)
    expect(bad.stderr).toBe('staccato: --streams must be from 1 to 16\n')
  })

  it('exits 1 with the error code and message when the transfer fails (missing source)', async () => {
    const r = await runCli(['transfer', 'submit', 'agent://store-1/vol/nope.bin', 'agent://compute-1/vol/nope.bin', '--wait'], env)
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^staccato: transfer tr_\S+ failed: not_found: /)
  })

  it('cancels a queued transfer and show --follow then exits 1', async () => {
    // An agent that never registered keeps the transfer queued; it must exist, so enrol one and stop it.
    await mesh.startAgent('idle-1')
    await mesh.kill('idle-1')
    await mesh.waitForAgent('idle-1', false)
    const submitted = await runCli(['transfer', 'submit', 'agent://store-1/vol/a.bin', 'agent://idle-1/vol/a.bin', '--json'], env)
    const id = (JSON.parse(submitted.stdout) as { id: string }).id
    const canceled = await runCli(['transfer', 'cancel', id], env)
    expect(canceled.code).toBe(0)
    expect(canceled.stdout).toBe(`${id}  canceled\n`)
    const followed = await runCli(['transfer', 'show', id, '--follow'], env)
    expect(followed.code).toBe(1)
    expect(followed.stderr).toBe(`staccato: transfer ${id} was canceled\n`)
  })

  it('lists agents and shows one', async () => {
    const r = await runCli(['agents', '--json'], env)
    expect(r.code).toBe(0)
    const names = (JSON.parse(r.stdout) as { items: Array<{ name: string }> }).items.map(a => a.name)
    expect(names).toEqual(expect.arrayContaining(['store-1', 'compute-1']))
    const one = await runCli(['agents', 'store-1'], env)
    expect(one.code).toBe(0)
    expect(one.stdout).toMatch(/^name:\s+store-1$/m)
    expect(one.stdout).toMatch(/^online:\s+yes$/m)
  })

  it('gives one clear line and exit 2 for an unknown agent, 1 for a missing transfer or a bad token', async () => {
    const unknown = await runCli(['transfer', 'submit', 'agent://store-1/vol/a.bin', 'agent://ghost/vol/a.bin'], env)
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/^staccato: destination: no agent named 'ghost' is registered .*\(unknown_agent\)\n$/)

    const missing = await runCli(['transfer', 'show', 'tr_00000000000000000000000000'], env)
    expect(missing.code).toBe(1)
    expect(missing.stderr).toBe("staccato: no transfer 'tr_00000000000000000000000000' (not_found)\n")
    const malformed = await runCli(['transfer', 'show', 'tr_bogus'], env)
    expect(malformed.code).toBe(2)
    expect(malformed.stderr).toBe("staccato: 'tr_bogus' is not a transfer id (tr_ and 26 capital letters and digits, as transfer list prints them)\n")

    const badToken = await runCli(['transfer', 'list'], { ...env, STACCATO_TOKEN: 'wrong' })
    expect(badToken.code).toBe(1)
    expect(badToken.stderr).toMatch(/^staccato: the coordinator at .* wants a valid API token \(the token was refused: .*\) — set --token, STACCATO_TOKEN/)

    const bad = await runCli(['transfer', 'submit', 'a', 'b', '--checksum', 'md5:00'], env)
    expect(bad.code).toBe(2)
    expect(bad.stderr).toBe('staccato: --checksum \'md5:00\' must be one of sha256, blake3, none, or sha256:<64 hex digits>\n')
  })

  it('says in one line that the coordinator cannot be reached', async () => {
    const port = await freePort()
    const r = await runCli(['transfer', 'list'], { XDG_CONFIG_HOME: home, STACCATO_URL: `http://127.0.0.1:${port}` })
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`staccato: cannot reach the coordinator at http://127.0.0.1:${port}: ECONNREFUSED — is it running? set --url or STACCATO_URL\n`)
  })

  it('takes the URL and token from flags over the environment over the client config file', async () => {
    const dir = join(home, 'staccato')
    await mkdir(dir, { recursive: true })
    const deadUrl = `http://127.0.0.1:${await freePort()}`
    // The file alone works.
    await writeFile(join(dir, 'client.json'), JSON.stringify({ url: mesh.ready.apiUrl, token: mesh.ready.apiToken }))
    expect((await runCli(['agents'], { XDG_CONFIG_HOME: home })).code).toBe(0)
    // The environment beats the file…
    const envWins = await runCli(['agents'], { XDG_CONFIG_HOME: home, STACCATO_URL: deadUrl })
    expect(envWins.stderr).toContain(`cannot reach the coordinator at ${deadUrl}`)
    // …and a flag beats the environment.
    expect((await runCli(['agents', '--url', mesh.ready.apiUrl], { XDG_CONFIG_HOME: home, STACCATO_URL: deadUrl })).code).toBe(0)
    const flagToken = await runCli(['agents', '--token', 'wrong'], { XDG_CONFIG_HOME: home, STACCATO_TOKEN: mesh.ready.apiToken })
    expect(flagToken.code).toBe(1)
    expect(flagToken.stderr).toContain('the token was refused')
    // --config names another file; a broken one is named in the error.
    await writeFile(join(home, 'other.json'), '{"url": "http://127.0.0.1:1", "colour": "red"}')
    const broken = await runCli(['agents', '--config', join(home, 'other.json')], {})
    expect(broken.code).toBe(2)
    expect(broken.stderr).toContain("unknown option 'colour'")
    await rm(join(dir, 'client.json'))
  })

  it('prints the change feed with events, filtered by topic, as JSON lines', async () => {
    const r = await runCli(['events', '--json', '--topics', 'transfer.*.state'], env)
    expect(r.code).toBe(0)
    const events = r.stdout.trim().split('\n').map(l => JSON.parse(l) as { seq: number, topic: string, data: { to?: string } })
    expect(events.length).toBeGreaterThan(0)
    expect(events.every(e => /^transfer\.tr_\S+\.state$/.test(e.topic))).toBe(true)
    expect(events.some(e => e.data.to === 'succeeded')).toBe(true)
    // Oldest first, each once.
    expect(events.map(e => e.seq)).toEqual([...new Set(events.map(e => e.seq))].sort((a, b) => a - b))
    const human = await runCli(['events', '--topics', 'agent.#', '--after', '0'], env)
    expect(human.code).toBe(0)
    expect(human.stdout).toMatch(/^\d+ {2}\S+ {2}agent\.store-1\.\S+ {2}\{/m)
  })

  it('shows a running agent\'s status from its status port, named by a flag or its config file', async () => {
    const port = new URL(mesh.agents.get('store-1')?.info.statusUrl as string).port
    const r = await runCli(['agent', 'status', '--status-port', port])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^name:\s+store-1$/m)
    expect(r.stdout).toMatch(new RegExp(`^peer id:\\s+${mesh.agents.get('store-1')?.info.peerId}$`, 'm'))
    expect(r.stdout).toMatch(/^coordinator:\s+\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\S+ \(connected, registered\)$/m)
    expect(r.stdout).toMatch(/^served:\s+[\d.]+ \S+ in \d+ requests \(\d+ refused\)$/m)
    const config = join(home, 'agent.yaml')
    await writeFile(config, `agent:\n  statusPort: ${port}\n`)
    const fromFile = await runCli(['agent', 'status', '--config', config, '--json'])
    expect(fromFile.code).toBe(0)
    expect((JSON.parse(fromFile.stdout) as { name: string }).name).toBe('store-1')
    const down = await runCli(['agent', 'status', '--status-port', String(await freePort())])
    expect(down.code).toBe(1)
    expect(down.stderr).toMatch(/^staccato: cannot reach the agent at http:\/\/127\.0\.0\.1:\d+\/status: ECONNREFUSED/)
  })

  it('shows the status from the config file the installer writes (which holds every agent option)', async () => {
    const port = new URL(mesh.agents.get('store-1')?.info.statusUrl as string).port
    const root = join(home, 'installed')
    await mkdir(join(home, 'images'), { recursive: true })
    await promisify(execFile)('bash', [
      join(import.meta.dirname, '../../scripts/install-agent.sh'), '--name', 'store-1', '--coordinator', mesh.ready.multiaddrs[0],
      '--join-token', 'stj_x', '--volume', `images=${join(home, 'images')}:ro`, '--status-port', port, '--node', process.execPath, '--root', root
    ])
    const r = await runCli(['agent', 'status', '--config', join(root, 'etc/staccato/agent.yaml')])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^name:\s+store-1$/m)
    // A typo in the file is still an error, named.
    await writeFile(join(home, 'typo.yaml'), `agent:\n  statusPort: ${port}\n  volumse: []\n`)
    const typo = await runCli(['agent', 'status', '--config', join(home, 'typo.yaml')])
    expect(typo.code).toBe(2)
    expect(typo.stderr).toContain('agent.volumse: unknown option')
    const help = await runCli(['agent', 'status', '--help'])
    expect(help.stdout).toMatch(/^ {2}--status-port <port>/m)
    expect(help.stdout).toMatch(/^ {2}--config <file>/m)
  })

  it('sends one source to several destinations (a distribution) and follows each', async () => {
    await mesh.startAgent('compute-2')
    await writeFile(join(mesh.volume('store-1'), 'small.bin'), randomBytes(2 * MiB))
    const r = await runCli(['transfer', 'submit', 'agent://store-1/vol/small.bin', 'agent://compute-1/vol/d.bin', 'agent://compute-2/vol/d.bin', '--wait'], env)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    // A row per destination under the transfer's own.
    expect(r.stdout).toMatch(/^ {2}→ compute-2 {2}succeeded/m)
    const digest = await sha256File(join(mesh.volume('store-1'), 'small.bin'))
    expect(await sha256File(join(mesh.volume('compute-1'), 'd.bin'))).toBe(digest)
    expect(await sha256File(join(mesh.volume('compute-2'), 'd.bin'))).toBe(digest)
  })

  it('never writes the API token or the join token into the logs', async () => {
    const dir = join(mesh.dir, 'logs')
    const logs = (await Promise.all((await readdir(dir)).map(async f => await readFile(join(dir, f), 'utf8')))).join('\n')
    expect(logs).toContain('transfer state changed')
    expect(logs).not.toContain(mesh.ready.apiToken)
    expect(logs).not.toContain(mesh.ready.joinToken)
  })
})
