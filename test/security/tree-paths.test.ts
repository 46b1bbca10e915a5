import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMeshNode, signTicket } from '../../mesh/index.ts'
import type { MeshNode, StaccatoError } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import { newCounters } from '../../agent/counters.ts'
import { startTreeServer } from '../../agent/tree/server.ts'
import { listTree, readFiles } from '../../agent/tree/client.ts'
import type { TreePeer } from '../../agent/tree/client.ts'

/**
 * /staccato/tree/1 against a reader holding a valid ticket for one tree: it
 * reads that tree and nothing else of the volume, whatever path it asks for
 * and whatever links the tree holds.
 */
describe('tree protocol: a ticket opens one tree', () => {
  let root: string
  let holder: MeshNode
  let reader: MeshNode
  let ticketFor: (src: string) => Promise<string>
  const counters = newCounters()

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-tree-sec-'))
    await mkdir(join(root, 'tree', 'sub'), { recursive: true })
    await writeFile(join(root, 'tree', 'sub', 'ok.txt'), 'ok')
    await mkdir(join(root, 'private'))
    await writeFile(join(root, 'private', 'secret.txt'), 'secret')
    await writeFile(join(root, 'top-secret.txt'), 'secret')
    // Links inside the tree to elsewhere in the same volume: the file plug-in alone would follow them.
    await symlink('../private', join(root, 'tree', 'to-private'))
    await symlink('../top-secret.txt', join(root, 'tree', 'to-secret.txt'))
    const coordinatorKey = await generateKeyPair('Ed25519')
    holder = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    reader = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    const volumeList = [{ name: 'vol', root, readOnly: false }]
    await startTreeServer({ node: holder, self: 'a', issuer: coordinatorKey.publicKey, volumes: file({ volumes: volumeList }), volumeList, counters, log: () => {} })
    ticketFor = async src => await signTicket(coordinatorKey, { v: 1, tid: 'tr_test', src, off: 0, rdr: reader.peerId.toString(), exp: Math.floor(Date.now() / 1000) + 600 })
  })
  afterAll(async () => {
    await reader?.stop()
    await holder?.stop()
    await rm(root, { recursive: true, force: true })
  })

  const peer = async (source: string, ticketSource = source): Promise<TreePeer> => ({
    node: reader, peerId: holder.peerId.toString(), addrs: holder.getMultiaddrs().map(a => a.toString()), ticket: await ticketFor(ticketSource), source
  })

  async function read (p: TreePeer, path: string): Promise<{ bytes: string, error?: StaccatoError }> {
    let bytes = ''
    let error: StaccatoError | undefined
    await readFiles(p, [{ path, offset: 0, expect: { size: 6, mtime: 0 } }], undefined, {
      file: async (_run, chunks) => { for await (const c of chunks) bytes += Buffer.from(c).toString() },
      end: async () => {},
      error: async (_path, err) => { error = err }
    })
    return { bytes, error }
  }

  it('lists the tree, and its links only as skipped entries', async () => {
    const entries = []
    for await (const batch of listTree(await peer('agent://a/vol/tree/'), {})) entries.push(...batch)
    expect(entries.map(e => [e.path, e.type]).sort()).toEqual([['sub', 'directory'], ['sub/ok.txt', 'file'], ['to-private', 'skipped'], ['to-secret.txt', 'skipped']])
  })

  it('refuses a file reached through a link in the tree, or a path with ..', async () => {
    const p = await peer('agent://a/vol/tree/')
    for (const path of ['to-secret.txt', 'to-private/secret.txt']) {
      const r = await read(p, path)
      expect(r.bytes, path).toBe('')
      expect(r.error?.code, path).toBe('permission_denied')
    }
    const dotted = await read(p, '../top-secret.txt')
    expect(dotted.bytes).toBe('')
    expect(dotted.error?.code).toBe('permission_denied')
  })

  it('refuses a ticket for another tree, and a tree location that is not a directory', async () => {
    await expect(read(await peer('agent://a/vol/private/', 'agent://a/vol/tree/'), 'secret.txt')).rejects.toMatchObject({ code: 'ticket_invalid' })
    const notDir = async (): Promise<void> => { for await (const _ of listTree(await peer('agent://a/vol/top-secret.txt'), {})) break }
    await expect(notDir()).rejects.toMatchObject({ code: 'permission_denied' })
  })
})
