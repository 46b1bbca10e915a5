import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createMeshNode, loadOrCreateIdentity, signTicket } from '../../mesh/index.ts'
import { agent } from '../../protocols/index.ts'
import type { ProtocolPlugin } from '../../protocols/index.ts'
import { spawnStaccato, stopProcess, waitForJson } from '../../cli/index.ts'
import { describeConformance } from './conformance.ts'
import { encodePath, filesUnder } from './support.ts'

/**
 * The agent plug-in (a volume on another agent, over /staccato/data/1) through
 * the same suite: a real agent process serves its volume; this process reads
 * it as another agent would, with a ticket the coordinator's key signed for
 * each object (the coordinator itself need not run for the data plane).
 */
describeConformance('agent', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'staccato-agent-plugin-'))
  const coordinatorKey = await loadOrCreateIdentity(join(dir, 'coordinator'))
  const coordinatorId = peerIdFromPrivateKey(coordinatorKey).toString()
  const volume = join(dir, 'volume')
  const ready = join(dir, 'ready.json')
  await mkdir(volume)
  const child = spawnStaccato([
    'agent', '--name', 'holder', '--coordinator', `/ip4/127.0.0.1/tcp/9/p2p/${coordinatorId}`, '--join-token', 'unused',
    '--data-dir', join(dir, 'agent'), '--volume', `vol=${volume}`, '--listen', '/ip4/127.0.0.1/tcp/0', '--ready-file', ready, '--log-level', 'warn'
  ], join(dir, 'agent.log'))
  const holder = await waitForJson<{ peerId: string, addrs: string[] }>(ready, child, 30_000, 'agent')
  const readerKey = await generateKeyPair('Ed25519')
  const reader = await createMeshNode({ privateKey: readerKey, listen: [] })
  const readerId = peerIdFromPrivateKey(readerKey).toString()

  async function forUrl (url: URL): Promise<ProtocolPlugin> {
    const ticket = await signTicket(coordinatorKey, { v: 1, tid: 'tr_conformance', src: url.href, off: 0, rdr: readerId, exp: Math.floor(Date.now() / 1000) + 600 })
    return agent({ node: reader, peer: { peerId: holder.peerId, addrs: holder.addrs }, ticket })
  }
  const template = agent({ node: reader, peer: { peerId: holder.peerId, addrs: holder.addrs }, ticket: '' })
  // One ticket per object, as the coordinator issues one per transfer.
  const plugin: ProtocolPlugin = {
    scheme: template.scheme,
    capabilities: template.capabilities,
    stat: async (url, opts) => await (await forUrl(url)).stat(url, opts),
    async * read (url, opts) { yield * (await forUrl(url)).read(url, opts) },
    write: async (url, opts) => await template.write(url, opts)
  }
  return {
    plugin,
    ...filesUnder(volume, name => new URL(`agent://holder/vol/${encodePath(name)}`)),
    teardown: async () => {
      await reader.stop()
      await stopProcess(child)
      await rm(dir, { recursive: true, force: true })
    }
  }
})
