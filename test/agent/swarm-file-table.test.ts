import { describe, expect, it } from 'vitest'
import { FileCompletion, checkTable, fileSegments, piecesOfFile, piecesWithin } from '../../agent/swarm/file-table.ts'
import type { TableFile } from '../../agent/swarm/file-table.ts'

/** Files of these sizes laid end to end, as a tree manifest lists them. */
function table (...sizes: number[]): TableFile[] {
  let offset = 0
  return sizes.map((size, i) => {
    const f = { path: `f${i}`, offset, size }
    offset += size
    return f
  })
}

describe('a tree distribution\'s file table', () => {
  it('splits a byte range of the concatenation into the files it covers, empty files left out', () => {
    const files = table(10, 0, 5, 0, 0, 20)
    expect(fileSegments(files, 0, 35)).toEqual([{ file: 0, at: 0, length: 10 }, { file: 2, at: 0, length: 5 }, { file: 5, at: 0, length: 20 }])
    expect(fileSegments(files, 8, 4)).toEqual([{ file: 0, at: 8, length: 2 }, { file: 2, at: 0, length: 2 }])
    // Starting exactly where empty files sit: they are stepped over, not taken as the file holding the byte.
    expect(fileSegments(files, 10, 3)).toEqual([{ file: 2, at: 0, length: 3 }])
    expect(fileSegments(files, 15, 1)).toEqual([{ file: 5, at: 0, length: 1 }])
    expect(fileSegments(files, 34, 10)).toEqual([{ file: 5, at: 19, length: 1 }])
    expect(fileSegments([], 0, 4)).toEqual([])
  })

  it('names the pieces that hold each file', () => {
    expect(piecesOfFile({ path: 'a', offset: 0, size: 8 }, 8)).toEqual({ first: 0, last: 0 })
    expect(piecesOfFile({ path: 'a', offset: 7, size: 2 }, 8)).toEqual({ first: 0, last: 1 })
    expect(piecesOfFile({ path: 'a', offset: 16, size: 17 }, 8)).toEqual({ first: 2, last: 4 })
    expect(piecesOfFile({ path: 'a', offset: 16, size: 0 }, 8)).toBeUndefined()
  })

  it('hands out each file once, when the last piece holding it was written, whatever the order', () => {
    // Pieces of 8: f0 = [0,10) in pieces 0-1, f1 = [10,13) in 1, f2 empty, f3 = [13,30) in 1-3.
    const files = table(10, 3, 0, 17)
    const m = { size: 30, pieceSize: 8 }
    const done = new FileCompletion(files, m)
    expect(done.written(3)).toEqual([])
    expect(done.written(0)).toEqual([])
    expect(done.written(2)).toEqual([])
    expect(done.written(1).sort()).toEqual([0, 1, 3])
    // The same piece again (two peers' copies): nothing more.
    expect(done.written(1)).toEqual([])
  })

  it('finds the pieces that lie wholly in files already held', () => {
    const files = table(10, 3, 0, 17)
    const m = { size: 30, pieceSize: 8 }
    expect(piecesWithin(files, new Set([3]), m)).toEqual([2, 3])
    expect(piecesWithin(files, new Set([0]), m)).toEqual([0])
    expect(piecesWithin(files, new Set([0, 1, 3]), m)).toEqual([0, 1, 2, 3])
  })

  it('refuses a table that leaves the tree or does not add up to the object', () => {
    expect(() => { checkTable(table(4, 4), 8) }).not.toThrow()
    expect(() => { checkTable(table(4, 4), 9) }).toThrow(/add up to 8 bytes/)
    expect(() => { checkTable([{ path: 'a', offset: 0, size: 4 }, { path: 'b', offset: 5, size: 4 }], 9) }).toThrow(/starts at 5/)
    for (const path of ['../x', 'a/../../x', '/etc/passwd', 'a//b', './a', 'a/']) {
      expect(() => { checkTable([{ path, offset: 0, size: 1 }], 1) }, path).toThrow(/not a path inside the tree/)
    }
  })
})
