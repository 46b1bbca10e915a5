import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AGENT_SIDE, COORDINATOR_SIDE, ControlChannel, MAX_CALLS_IN_FLIGHT, MAX_UNSENT_BYTES, WIRE_VERSION, createMeshNode, encodeFrame, send } from '../../mesh/index.ts'
import type { AgentToCoordinator, ControlHandlers, CoordinatorToAgent, MeshNode } from '../../mesh/index.ts'

const MiB = 1024 * 1024
const PROTOCOL = '/staccato-test/control/1'
// The test peer's yamux window, never grown: what it takes before it stops reading.
const WINDOW = 4 * MiB

async function until (check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/**
 * The control channel's side of "bounded whatever the peer does": a peer
 * that calls without reading the replies, or calls faster than the handlers
 * finish, costs this side a bounded amount of memory.
 */
describe('control channel: bounded work and buffers per peer', () => {
  let server: MeshNode
  let client: Libp2p
  // Every call the tests make is a `report`; each test sets what answering one does.
  let onReport: () => Promise<object> = async () => ({})
  const handlers: ControlHandlers<AgentToCoordinator, undefined> = {
    register: async () => ({}),
    report: async () => await onReport(),
    swarmReport: async () => ({}),
    treeFiles: async () => ({}),
    heartbeat: async () => {},
    progress: async () => {},
    swarmStats: async () => {},
    swarmProgress: async () => {},
    imageWant: async () => ({ self: true })
  }
  const report = { transferId: 'tr_x', attempt: 1, outcome: 'failed' as const }
  const accepted: Array<{ stream: Stream, channel: ControlChannel<CoordinatorToAgent, AgentToCoordinator> }> = []

  beforeAll(async () => {
    server = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    await server.handle(PROTOCOL, stream => { accepted.push({ stream, channel: new ControlChannel(stream, COORDINATOR_SIDE, { table: { handlers, context: () => undefined } }) }) })
    client = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({ streamOptions: { initialStreamWindowSize: WINDOW, maxStreamWindowSize: WINDOW } })],
      connectionGater: { denyDialMultiaddr: () => false }
    })
  })
  afterAll(async () => {
    await client.stop()
    await server.stop()
  })

  it('ends the channel when the peer calls and never reads the replies, holding at most a few MiB for it', async () => {
    const reply = 'r'.repeat(16 * 1024)
    let handled = 0
    let maxUnsent = 0
    onReport = async () => {
      handled++
      return { reply }
    }
    const stream = await client.dialProtocol(server.getMultiaddrs(), PROTOCOL)
    stream.pause()
    const calls = 2000
    const sending = (async () => {
      for (let id = 1; id <= calls; id++) await send(stream, encodeFrame({ v: WIRE_VERSION, kind: 'call', id, method: 'report', params: report }))
    })().catch(() => {})
    await until(() => accepted.length === 1, 'the server to accept the stream')
    const { stream: served, channel } = accepted[0]
    let closedWith: Error | undefined | null = null
    void channel.closed.then(err => { closedWith = err })
    // Either the channel gave up on this peer, or every call was answered and queued for it.
    await until(() => {
      maxUnsent = Math.max(maxUnsent, served.writeBufferLength)
      return closedWith !== null || (handled === calls && stream.readBufferLength >= WINDOW)
    }, 'the channel to end or every call to be answered')
    maxUnsent = Math.max(maxUnsent, served.writeBufferLength)
    stream.abort(new Error('test over'))
    await sending

    expect(closedWith).toMatchObject({ code: 'protocol_error' })
    expect(maxUnsent).toBeLessThanOrEqual(MAX_UNSENT_BYTES + MiB)
  })

  it(`runs at most ${MAX_CALLS_IN_FLIGHT} of a peer's calls at once and answers the rest "busy", retryable`, async () => {
    accepted.length = 0
    const release: Array<() => void> = []
    let running = 0
    onReport = async () => {
      running++
      await new Promise<void>(resolve => release.push(resolve))
      return {}
    }
    const stream = await client.dialProtocol(server.getMultiaddrs(), PROTOCOL)
    const caller = new ControlChannel(stream, AGENT_SIDE)
    const extra = 44
    const results = Array.from({ length: MAX_CALLS_IN_FLIGHT + extra }, async () => await caller.call('report', report).then(() => 'ok', (err: { code: string, retryable: boolean, message: string }) => err))
    const refused = (await Promise.all(results.slice(MAX_CALLS_IN_FLIGHT)))
    expect(running).toBe(MAX_CALLS_IN_FLIGHT)
    expect(refused).toHaveLength(extra)
    for (const r of refused) expect(r).toMatchObject({ code: 'network', retryable: true, message: expect.stringMatching(/busy/) })
    for (const r of release) r()
    expect(new Set(await Promise.all(results.slice(0, MAX_CALLS_IN_FLIGHT)))).toEqual(new Set(['ok']))
    caller.close()
  })
})
