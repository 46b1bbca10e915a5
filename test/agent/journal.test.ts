import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { Journal } from '../../agent/journal.ts'
import type { JournalEntry, SwarmEntry } from '../../agent/journal.ts'

function transfer (id: string, over: Partial<JournalEntry> = {}): JournalEntry {
  return {
    transferId: id,
    attempt: 1,
    source: 'agent://a/vol/x',
    destination: 'agent://b/vol/y',
    version: { size: 100, mtime: 5 },
    durableOffset: 0,
    updatedAt: 0,
    ...over
  }
}

function swarm (id: string, over: Partial<SwarmEntry> = {}): SwarmEntry {
  return { distributionId: id, destination: 'agent://b/vol/y', manifestSha256: 'ab'.repeat(32), have: 'AA==', ...over }
}

/** Writes `raw` as the stored value of `key` in one of the journal's sublevels, as a torn or foreign write would leave it. */
async function writeRaw (dir: string, sublevel: string, key: string, raw: string): Promise<void> {
  const db = new Level<string, string>(dir)
  await db.open()
  await db.sublevel<string, string>(sublevel, { valueEncoding: 'utf8' }).put(key, raw)
  await db.close()
}

describe('the agent journal (a real LevelDB in a temporary directory)', () => {
  let dir: string
  let journal: Journal
  const skipped: string[] = []

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'staccato-journal-'))
    skipped.length = 0
    journal = await Journal.open(join(dir, 'journal'), { onCorrupt: key => skipped.push(key) })
  })
  afterEach(async () => {
    await journal.close().catch(() => {}) // some tests close it themselves
    await rm(dir, { recursive: true, force: true })
  })

  async function reopen (): Promise<void> {
    await journal.close()
    journal = await Journal.open(join(dir, 'journal'), { onCorrupt: key => skipped.push(key) })
  }

  it('puts, gets, lists and removes transfer entries', async () => {
    expect(await journal.get('t1')).toBeUndefined()
    await journal.put(transfer('t1'))
    await journal.put(transfer('t2', { attempt: 2 }))
    expect(await journal.get('t1')).toMatchObject({ transferId: 't1', attempt: 1, durableOffset: 0 })
    expect((await journal.all()).map(e => e.transferId).sort()).toEqual(['t1', 't2'])
    await journal.remove('t1')
    expect(await journal.get('t1')).toBeUndefined()
    expect((await journal.all()).map(e => e.transferId)).toEqual(['t2'])
    // Removing what is not there is not an error: an acknowledgment may come twice.
    await journal.remove('t1')
  })

  it('stamps each write with the time it was journaled', async () => {
    const before = Date.now()
    await journal.put(transfer('t1', { updatedAt: 0 }))
    expect((await journal.get('t1'))?.updatedAt).toBeGreaterThanOrEqual(before)
  })

  it('commitOffset records the durable offset in the entry and on disk', async () => {
    const entry = transfer('t1')
    await journal.put(entry)
    await journal.commitOffset(entry, 64)
    expect(entry.durableOffset).toBe(64)
    await reopen()
    expect((await journal.get('t1'))?.durableOffset).toBe(64)
  })

  it('keeps an outcome across a restart until it is removed (the acknowledgment)', async () => {
    const outcome = { outcome: 'succeeded' as const, sha256: 'cd'.repeat(32), bytesDone: 100, bytesTotal: 100 }
    await journal.put(transfer('t1', { durableOffset: 100, outcome }))
    await reopen()
    expect((await journal.get('t1'))?.outcome).toEqual(outcome)
    expect((await journal.all()).filter(e => e.outcome !== undefined).map(e => e.transferId)).toEqual(['t1'])
    await journal.remove('t1')
    await reopen()
    expect(await journal.all()).toEqual([])
  })

  it('keeps a tree\'s finished files by transfer and path, across a restart, until the transfer is removed', async () => {
    expect(await journal.hasTreeFiles('t1')).toBe(false)
    await journal.put(transfer('t1'))
    // A name may hold a newline or unicode; a transfer whose id extends another's is its own.
    await journal.putTreeFiles('t1', [{ path: 'a/new\nline é', version: { size: 3, mtime: 10 } }, { path: 'b', version: { size: 0, mtime: 11 } }])
    await journal.putTreeFiles('t10', [{ path: 'b', version: { size: 5, mtime: 12 } }])
    await reopen()
    expect(await journal.hasTreeFiles('t1')).toBe(true)
    expect(await journal.treeFilesDone('t1', ['b', 'missing', 'a/new\nline é'])).toEqual([{ size: 0, mtime: 11 }, undefined, { size: 3, mtime: 10 }])
    // Not listed with the transfers: the status page and the registration read those.
    expect((await journal.all()).map(e => e.transferId)).toEqual(['t1'])
    await journal.remove('t1')
    expect(await journal.hasTreeFiles('t1')).toBe(false)
    expect(await journal.treeFilesDone('t1', ['b'])).toEqual([undefined])
    expect(await journal.treeFilesDone('t10', ['b'])).toEqual([{ size: 5, mtime: 12 }])
  })

  it('keeps swarm entries apart from transfers, with their outcome until removed', async () => {
    await journal.put(transfer('x'))
    await journal.putSwarm(swarm('x'))
    await journal.putSwarm(swarm('d2', { outcome: { outcome: 'failed', error: { code: 'checksum_mismatch', message: 'bad', retryable: true } } }))
    expect(await journal.getSwarm('x')).toEqual(swarm('x'))
    expect((await journal.allSwarms()).map(e => e.distributionId).sort()).toEqual(['d2', 'x'])
    await journal.removeSwarm('x')
    expect(await journal.getSwarm('x')).toBeUndefined()
    expect(await journal.get('x')).toMatchObject({ transferId: 'x' })
    await reopen()
    expect((await journal.getSwarm('d2'))?.outcome?.outcome).toBe('failed')
  })

  it('reads as absent, and lists without, an entry that does not parse, and says which', async () => {
    await journal.put(transfer('good'))
    await journal.putSwarm(swarm('sgood'))
    await journal.close()
    await writeRaw(join(dir, 'journal'), 'transfers', 'torn', '{"transferId":"torn","attem')
    await writeRaw(join(dir, 'journal'), 'swarms', 'storn', 'not json')
    journal = await Journal.open(join(dir, 'journal'), { onCorrupt: key => skipped.push(key) })
    // The journal only lets an agent resume: an unreadable entry costs a restart from zero, not the agent's registration.
    expect(await journal.get('torn')).toBeUndefined()
    expect((await journal.all()).map(e => e.transferId)).toEqual(['good'])
    expect(await journal.getSwarm('storn')).toBeUndefined()
    expect((await journal.allSwarms()).map(e => e.distributionId)).toEqual(['sgood'])
    expect(skipped).toContain('torn')
    expect(skipped).toContain('storn')
    // A fresh entry under the same key replaces the unreadable one.
    await journal.put(transfer('torn', { attempt: 3 }))
    expect((await journal.get('torn'))?.attempt).toBe(3)
  })
})
