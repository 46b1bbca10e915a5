import { describe, expect, it } from 'vitest'
import { NotFoundError, UnsupportedError } from '../../mesh/index.ts'
import { nullSink, random } from '../../protocols/index.ts'
import { describeConformance } from './conformance.ts'
import { MiB, collect } from './support.ts'

describeConformance('null', async () => ({
  plugin: nullSink(),
  url: () => new URL('null://'),
  largeSize: 256 * MiB
}))

describe('null plug-in', () => {
  it('counts and discards what is written, from any offset', async () => {
    const sink = nullSink()
    const w = await sink.write(new URL('null://'), { offset: 0, key: 'a' })
    for await (const chunk of random().read(new URL('random://?size=5MiB&seed=1'), { offset: 0 })) await w.write(chunk)
    expect(await w.sync()).toBe(5 * MiB)
    await w.commit()
    const resumed = await sink.write(new URL('null://'), { offset: 100, key: 'b' })
    await resumed.write(new Uint8Array(10))
    expect(await resumed.sync()).toBe(110)
    await resumed.abort()
    expect(sink.counters).toEqual({ bytes: 5 * MiB + 10, commits: 1, aborts: 1 })
  })

  it('holds no objects and cannot be read', async () => {
    await expect(nullSink().stat(new URL('null://'))).rejects.toBeInstanceOf(NotFoundError)
    await expect(collect(nullSink().read(new URL('null://'), { offset: 0 }))).rejects.toBeInstanceOf(UnsupportedError)
  })
})
