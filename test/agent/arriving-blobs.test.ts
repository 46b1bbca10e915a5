import { describe, expect, it } from 'vitest'
import { Arrival, ArrivingBlobs, Ranges } from '../../agent/arriving-blobs.ts'

describe('Ranges', () => {
  it('merges touching and overlapping spans and answers the run from an offset', () => {
    const r = new Ranges()
    r.add(10, 20)
    r.add(30, 40)
    expect(r.runFrom(0)).toBe(0)
    expect(r.runFrom(15)).toBe(5)
    r.add(20, 30)
    expect(r.runFrom(10)).toBe(30)
    r.add(5, 12)
    expect(r.runFrom(5)).toBe(35)
    expect(r.runFrom(40)).toBe(0)
    expect(r.total).toBe(35)
  })
})

function blobOf (bytes: Buffer): { arrival: Arrival, reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = []
  const arrival = new Arrival('sha256:x', bytes.length, async (at, length) => {
    reads.push([at, length])
    return bytes.subarray(at, at + length)
  })
  return { arrival, reads }
}

describe('Arrival', () => {
  it('gives a reader only bytes marked written, waiting for the gap in front of it to fill', async () => {
    const bytes = Buffer.from('0123456789')
    const { arrival, reads } = blobOf(bytes)
    arrival.written(4, 6)
    const first = arrival.next(0, 10)
    // The bytes after the gap are there, the reader's offset is not: nothing is read yet.
    await Promise.resolve()
    expect(reads).toEqual([])
    arrival.written(0, 4)
    expect(Buffer.from(await first as Uint8Array).toString()).toBe('0123456789')
    expect(reads).toEqual([[0, 10]])
  })

  it('hands a reader over to the committed blob, and fails readers of a blob given up', async () => {
    const { arrival } = blobOf(Buffer.from('abcdef'))
    arrival.written(0, 2)
    const waiting = arrival.next(2, 4)
    await arrival.committing()
    arrival.end(true)
    expect(await waiting).toBeUndefined()

    const other = blobOf(Buffer.from('abcdef')).arrival
    const stuck = other.next(0, 6)
    other.end(false)
    await expect(stuck).rejects.toThrow(/stopped/)
  })

  it('holds reads while the commit moves the file, and lets the commit wait for a read in progress', async () => {
    let release: () => void = () => {}
    const order: string[] = []
    const arrival = new Arrival('sha256:y', 4, async (at, length) => {
      order.push('read')
      await new Promise<void>(resolve => { release = resolve })
      return Buffer.alloc(length)
    })
    arrival.written(0, 4)
    const read = arrival.next(0, 4)
    await Promise.resolve()
    const commit = arrival.committing().then(() => { order.push('committing') })
    await Promise.resolve()
    expect(order).toEqual(['read'])
    release()
    await read
    await commit
    expect(order).toEqual(['read', 'committing'])
  })

  it('stops waiting when its reader goes away', async () => {
    const { arrival } = blobOf(Buffer.from('abc'))
    const gone = new AbortController()
    const waiting = arrival.next(0, 3, gone.signal)
    gone.abort()
    await expect(waiting).rejects.toThrow(/went away/)
  })
})

describe('ArrivingBlobs', () => {
  it('keeps the first writer of a digest, and forgets it once it ends', () => {
    const blobs = new ArrivingBlobs()
    const a = blobs.begin('sha256:z', 1, async () => Buffer.alloc(1)) as Arrival
    expect(blobs.begin('sha256:z', 1, async () => Buffer.alloc(1))).toBeUndefined()
    expect(blobs.get('sha256:z')).toBe(a)
    blobs.end(a, true)
    expect(blobs.get('sha256:z')).toBeUndefined()
    expect(a.committed).toBe(true)
  })
})
