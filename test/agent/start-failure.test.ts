import { createServer } from 'node:net'
import type { Server } from 'node:net'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { startAgent } from '../../agent/index.ts'
import type { AgentConfig } from '../../agent/index.ts'

/** A server on a loopback port the system picks; `close` frees the port. */
async function listen (port = 0): Promise<Server> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => { resolve() })
  })
  return server
}

function portOf (server: Server): number {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('not a TCP server')
  return address.port
}

async function close (server: Server): Promise<void> {
  await new Promise<void>((resolve, reject) => { server.close(err => { if (err !== undefined) reject(err); else resolve() }) })
}

/** A free loopback port: taken, then given back (nothing else on this machine asks for this one port by number). */
async function freePort (): Promise<number> {
  const server = await listen()
  const port = portOf(server)
  await close(server)
  return port
}

/**
 * An agent that fails part-way through its start, in process: what it opened
 * before the failure (its direct data port, its mesh node, its journal's
 * LevelDB) must be closed again, or an embedder that retries (or a test)
 * finds the port taken and the data directory locked.
 */
describe('agent: a start that fails part-way leaves nothing open', () => {
  let dir: string
  let coordinator: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-start-failure-'))
    // Nobody listens there: the agent only dials it, in the background, until it stops.
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    coordinator = `/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${peer.toString()}`
  })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  const config = async (name: string, extra: Partial<AgentConfig>): Promise<AgentConfig> => {
    const volume = join(dir, name, 'vol')
    await mkdir(volume, { recursive: true })
    return {
      name,
      coordinator,
      dataDir: join(dir, name, 'data'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      volumes: [{ name: 'vol', root: volume, readOnly: false }],
      plugins: [],
      syncEveryBytes: 1 << 20,
      syncEveryMs: 1000,
      logLevel: 'silent',
      ...extra
    }
  }

  it('closes the data port when its status port is taken', async () => {
    const taken = await listen()
    try {
      const dataPort = await freePort()
      const cfg = await config('status-taken', { dataListen: `127.0.0.1:${dataPort}`, statusPort: portOf(taken) })
      await expect(startAgent(cfg)).rejects.toThrow(/cannot serve status or metrics/)
      await close(await listen(dataPort))
    } finally {
      await close(taken)
    }
  })

  it('closes the data port, the mesh node and the journal when a part before the servers cannot start', async () => {
    const dataPort = await freePort()
    const cfg = await config('blobs-unusable', { dataListen: `127.0.0.1:${dataPort}` })
    // A file where the blob store's directory goes: the agent cannot open its blob store, after its data port opened.
    await mkdir(cfg.dataDir, { recursive: true })
    await writeFile(join(cfg.dataDir, 'blobs'), 'not a directory')
    await expect(startAgent(cfg)).rejects.toThrow(/ENOTDIR|EEXIST|not a directory/i)
    await close(await listen(dataPort))
    // The journal's LevelDB is not held: the same data directory starts, once the blob store can be made.
    await rm(join(cfg.dataDir, 'blobs'))
    const agent = await startAgent(cfg)
    await agent.stop()
  })

  it('refuses a data port the operator chose when it is taken, naming --data-listen, and leaves nothing open', async () => {
    const taken = await listen()
    try {
      const cfg = await config('data-taken', { dataListen: `127.0.0.1:${portOf(taken)}` })
      await expect(startAgent(cfg)).rejects.toMatchObject({
        code: 'address_in_use',
        message: `the data port cannot listen on 127.0.0.1:${portOf(taken)}: the address is already in use (another process holds it; choose another with --data-listen)`
      })
      // Its mesh node and journal were closed: the same data directory starts once the port is another.
      const agent = await startAgent({ ...cfg, dataListen: undefined })
      await agent.stop()
    } finally {
      await close(taken)
    }
  })

  it('refuses a taken mesh listen address, naming it and --listen', async () => {
    const taken = await listen()
    try {
      const cfg = await config('mesh-taken', { listen: [`/ip4/127.0.0.1/tcp/${portOf(taken)}`] })
      await expect(startAgent(cfg)).rejects.toMatchObject({
        code: 'address_in_use',
        message: `the mesh cannot listen on /ip4/127.0.0.1/tcp/${portOf(taken)}: the address is already in use (another process holds it; choose another with --listen)`
      })
      const agent = await startAgent({ ...cfg, listen: ['/ip4/127.0.0.1/tcp/0'] })
      await agent.stop()
    } finally {
      await close(taken)
    }
  })
})
