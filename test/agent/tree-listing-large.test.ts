import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FrameReader, TREE_BATCH, TREE_PROTOCOL, TreeMessage, WIRE_VERSION, createMeshNode, decode, sendFrame, signTicket } from '../../mesh/index.ts'
import type { MeshNode } from '../../mesh/index.ts'
import { file } from '../../protocols/index.ts'
import { newCounters } from '../../agent/counters.ts'
import { startTreeServer } from '../../agent/tree/server.ts'

const ENTRIES = 100_000
/** The server's bound on the paths of one `entries` message (agent/tree/server.ts), plus the frame's own JSON. */
const ENTRIES_BYTES = 256 * 1024
const FRAME_SLACK = 64 * 1024

/**
 * A directory of 100,000 entries (empty files: cheap to make), listed by the
 * walker and through /staccato/tree/1 between two real mesh nodes: every
 * entry comes once, in messages of bounded size, never as one whole.
 */
describe('a directory of 100,000 entries', () => {
  let root: string
  let holder: MeshNode
  let reader: MeshNode
  let ticket: string

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'staccato-tree-100k-'))
    const dir = join(root, 'big')
    await mkdir(dir)
    // One process for all of them: xargs batches the names into few touch calls.
    execFileSync('sh', ['-c', `seq -f 'f%06g' 1 ${ENTRIES} | xargs touch`], { cwd: dir })
    const coordinatorKey = await generateKeyPair('Ed25519')
    holder = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    reader = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
    const volumeList = [{ name: 'vol', root, readOnly: false }]
    await startTreeServer({ node: holder, self: 'a', issuer: coordinatorKey.publicKey, volumes: file({ volumes: volumeList }), volumeList, counters: newCounters(), log: () => {} })
    ticket = await signTicket(coordinatorKey, { v: 1, tid: 'tr_test', src: 'agent://a/vol/big/', off: 0, rdr: reader.peerId.toString(), exp: Math.floor(Date.now() / 1000) + 600 })
  }, 120_000)
  afterAll(async () => {
    await reader?.stop()
    await holder?.stop()
    if (root !== undefined) await rm(root, { recursive: true, force: true })
  })

  it('the file plug-in\'s walk yields every entry once', async () => {
    const seen = new Set<string>()
    const walk = file({ volumes: [{ name: 'vol', root, readOnly: true }] }).walk
    if (walk === undefined) throw new Error('the file plug-in walks directories')
    for await (const e of walk(new URL('file:///vol/big/'))) {
      expect(e.type).toBe('file')
      seen.add(e.path)
    }
    expect(seen.size).toBe(ENTRIES)
  }, 60_000)

  it('the holder lists them in messages of at most 256 entries and 256 KiB, each entry once', async () => {
    const stream = await reader.dialProtocol(holder.getMultiaddrs(), TREE_PROTOCOL)
    await sendFrame(stream, { v: WIRE_VERSION, op: 'list', ticket, source: 'agent://a/vol/big/' })
    const frames = new FrameReader(stream)
    const seen = new Set<string>()
    let messages = 0
    let largest = 0
    for (let i = 0; i <= ENTRIES; i++) {
      const raw = await frames.readFrame()
      const m = decode(TreeMessage, raw, 'tree message')
      if (m.t === 'end') break
      if (m.t !== 'entries') throw new Error(`unexpected ${m.t}`)
      messages++
      expect(m.entries.length).toBeLessThanOrEqual(TREE_BATCH)
      largest = Math.max(largest, Buffer.byteLength(JSON.stringify(raw)))
      for (const e of m.entries) seen.add(e.path)
    }
    await stream.close()
    expect(seen.size).toBe(ENTRIES)
    expect(messages).toBeGreaterThanOrEqual(ENTRIES / TREE_BATCH)
    expect(largest).toBeLessThanOrEqual(ENTRIES_BYTES + FRAME_SLACK)
  }, 60_000)
})
