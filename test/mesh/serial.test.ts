import { describe, expect, it } from 'vitest'
import { Serial } from '../../mesh/index.ts'

/** A promise the test settles by hand, so that order is decided by the test and not by timing. */
function gate (): { promise: Promise<void>, open: () => void, fail: (err: Error) => void } {
  let open!: () => void
  let fail!: (err: Error) => void
  const promise = new Promise<void>((resolve, reject) => { open = resolve; fail = reject })
  return { promise, open, fail }
}

describe('Serial', () => {
  it('starts a task only after the one before it has settled, in the order handed in', async () => {
    const serial = new Serial()
    const log: string[] = []
    const first = gate()
    const a = serial.run(async () => { log.push('a starts'); await first.promise; log.push('a ends'); return 'a' })
    const b = serial.run(async () => { log.push('b runs'); return 'b' })
    await Promise.resolve()
    await Promise.resolve()
    expect(log).toEqual(['a starts'])
    first.open()
    expect(await Promise.all([a, b])).toEqual(['a', 'b'])
    expect(log).toEqual(['a starts', 'a ends', 'b runs'])
  })

  it('gives a failure to its own caller and goes on with the next task', async () => {
    const serial = new Serial()
    const first = gate()
    const a = serial.run(async () => { await first.promise })
    const b = serial.run(async () => 'b')
    first.fail(new Error('disk full'))
    await expect(a).rejects.toThrow('disk full')
    expect(await b).toBe('b')
  })

  it('is idle once every task handed in has settled, failed ones included', async () => {
    const serial = new Serial()
    const first = gate()
    const settled: string[] = []
    void serial.run(async () => { await first.promise }).catch(() => settled.push('a'))
    const idle = serial.idle().then(() => settled.push('idle'))
    first.fail(new Error('closed'))
    await idle
    expect(settled).toEqual(['a', 'idle'])
  })
})
