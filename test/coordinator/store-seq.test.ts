import { afterEach, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { TransferStore } from '../../coordinator/store.ts'
import { tempStore } from './helpers.ts'

const STORE = fileURLToPath(new URL('../../coordinator/store.ts', import.meta.url))

describe('event seqs across restarts', () => {
  let dirs: string[] = []
  afterEach(async () => {
    await Promise.all(dirs.map(async d => await rm(d, { recursive: true, force: true })))
    dirs = []
  })

  it('numbers on from the last event after a clean close, with no gap', async () => {
    const t = await tempStore()
    dirs.push(t.dir)
    await t.store.appendEvent('test.a', 'default', {})
    const last = await t.store.appendEvent('test.b', 'default', {}, { sync: false })
    const store = await t.reopen()
    expect((await store.appendEvent('test.c', 'default', {})).seq).toBe(last.seq + 1)
    await t.cleanup()
  })

  it('never reuses a seq that unsynced events may have shown to clients, after a stop without close', async () => {
    const t = await tempStore()
    dirs.push(t.dir)
    await t.store.close()
    // A coordinator that writes unsynced (progress-like) events and dies without closing its store.
    const script = `
      import { TransferStore } from ${JSON.stringify(STORE)}
      const store = await TransferStore.open(${JSON.stringify(t.dir)})
      let last
      for (let i = 0; i < 5; i++) last = await store.appendEvent('test.progress', 'default', { i }, { sync: false })
      process.stdout.write(String(last.seq))
      process.kill(process.pid, 'SIGKILL')
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script])
    let out = ''
    child.stdout.on('data', (b: Buffer) => { out += b.toString() })
    const [, signal] = await once(child, 'exit') as [number | null, string | null]
    expect(signal).toBe('SIGKILL')
    const lastShown = Number(out)
    expect(lastShown).toBe(5)
    const store = await TransferStore.open(t.dir)
    try {
      // An OS crash could have lost events 1..5 after clients saw them; the next seq lies past all of them, with a gap.
      const next = await store.appendEvent('test.after', 'default', {})
      expect(next.seq).toBeGreaterThan(lastShown + 1)
      expect((await store.readEvents(lastShown, 10)).map(e => e.seq)).toEqual([next.seq])
    } finally {
      await store.close()
    }
  })
})
