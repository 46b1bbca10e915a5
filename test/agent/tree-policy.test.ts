import { describe, it, expect } from 'vitest'
import { GROUP_BYTES, GROUP_FILES, READ_REQUEST_BYTES, SMALL_FILE_BYTES, carriedWhole, extraDecision, finishedAlready, groupFull, linkDecision, requestBytes, splitLanes, syncDecision, treeSelector } from '../../agent/tree/policy.ts'
import { MAX_FRAME_BYTES } from '../../mesh/index.ts'

describe('treeSelector: include and exclude globs', () => {
  it('a pattern without / matches a name at any depth; with / the whole path', () => {
    const keep = treeSelector({ exclude: ['*.tmp', 'cache/**', 'cache'] })
    expect(keep('a.tmp', false)).toBe(false)
    expect(keep('deep/er/b.tmp', false)).toBe(false)
    expect(keep('deep/er/b.txt', false)).toBe(true)
    expect(keep('cache', true)).toBe(false)
    expect(keep('cache/x', false)).toBe(false)
    expect(keep('other/cache/x', false)).toBe(true)
  })

  it('include selects files but every directory is entered; exclude wins', () => {
    const keep = treeSelector({ include: ['*.jpg'], exclude: ['raw/*'] })
    expect(keep('photos', true)).toBe(true)
    expect(keep('photos/a.jpg', false)).toBe(true)
    expect(keep('photos/a.png', false)).toBe(false)
    expect(keep('raw/a.jpg', false)).toBe(false)
  })

  it('dot files and odd names are names like any other', () => {
    const keep = treeSelector({ exclude: ['*.tmp'] })
    expect(keep('.hidden', false)).toBe(true)
    expect(keep('.x.tmp', false)).toBe(false)
    expect(keep('new\nline é.tmp', false)).toBe(false)
    expect(keep('new\nline é.txt', false)).toBe(true)
  })

  it('no filter keeps everything', () => {
    expect(treeSelector({})('anything/at/all', false)).toBe(true)
  })
})

describe('syncDecision: Globus sync levels', () => {
  const src = { size: 10, mtime: 5000 }
  it('nothing there, or mode none: copy', () => {
    for (const mode of ['none', 'exists', 'size', 'mtime', 'checksum'] as const) expect(syncDecision(mode, src, undefined)).toBe('copy')
    expect(syncDecision('none', src, src)).toBe('copy')
  })
  it('exists skips whatever is there', () => {
    expect(syncDecision('exists', src, { size: 1, mtime: 1 })).toBe('skip')
  })
  it('size compares sizes only', () => {
    expect(syncDecision('size', src, { size: 10, mtime: 1 })).toBe('skip')
    expect(syncDecision('size', src, { size: 11, mtime: 5000 })).toBe('copy')
  })
  it('mtime compares size and mtime', () => {
    expect(syncDecision('mtime', src, { size: 10, mtime: 5000 })).toBe('skip')
    expect(syncDecision('mtime', src, { size: 10, mtime: 9000 })).toBe('copy')
    expect(syncDecision('mtime', src, { size: 9, mtime: 5000 })).toBe('copy')
  })
  it('checksum needs the digests when the sizes agree', () => {
    expect(syncDecision('checksum', src, { size: 10, mtime: 1 })).toBe('compare-checksums')
    expect(syncDecision('checksum', src, { size: 3, mtime: 5000 })).toBe('copy')
  })
})

describe('extraDecision: what a mirror removes from the destination', () => {
  const keep = treeSelector({ include: ['*.jpg'], exclude: ['cache'] })
  const source = new Set(['photos', 'photos/a.jpg'])
  const inSource = (p: string): boolean => source.has(p)

  it('removes a selected entry the source does not have, keeps one it has', () => {
    expect(extraDecision(keep, inSource, 'photos/a.jpg', false)).toBe('keep')
    expect(extraDecision(keep, inSource, 'photos/b.jpg', false)).toBe('extra')
    expect(extraDecision(keep, inSource, 'old', true)).toBe('extra')
  })

  it('leaves what the globs leave out: a file not included, an excluded directory (not entered)', () => {
    expect(extraDecision(keep, inSource, 'photos/notes.txt', false)).toBe('keep')
    expect(extraDecision(keep, inSource, 'cache', true)).toBe('skip-below')
    expect(extraDecision(keep, inSource, 'deep/cache', true)).toBe('skip-below')
  })
})

describe('the small-file path: which files, and when a group is written', () => {
  it('a file up to SMALL_FILE_BYTES that starts at zero goes whole; a larger or a resumed one through the writer', () => {
    expect(carriedWhole(0, 0)).toBe(true)
    expect(carriedWhole(4096, 0)).toBe(true)
    expect(carriedWhole(SMALL_FILE_BYTES, 0)).toBe(true)
    expect(carriedWhole(SMALL_FILE_BYTES + 1, 0)).toBe(false)
    expect(carriedWhole(4096, 1024)).toBe(false)
  })

  it('a group is written at GROUP_FILES files or GROUP_BYTES bytes, whichever comes first', () => {
    expect(groupFull(GROUP_FILES - 1, 0)).toBe(false)
    expect(groupFull(GROUP_FILES, 0)).toBe(true)
    expect(groupFull(1, GROUP_BYTES - 1)).toBe(false)
    expect(groupFull(1, GROUP_BYTES)).toBe(true)
  })
})

describe('finishedAlready: a file an earlier attempt finished is not copied again', () => {
  const v = { size: 10, mtime: 1000 }
  it('skips it while the source is the version it came from and the destination holds its size', () => {
    expect(finishedAlready(v, v, { size: 10, mtime: 1000 })).toBe(true)
    // Whatever the mtime there: sync none keeps no mtime promise, and the journal is the proof.
    expect(finishedAlready(v, v, { size: 10, mtime: 5 })).toBe(true)
  })

  it('copies it again when it was never finished, the source changed, or the destination lost it', () => {
    expect(finishedAlready(undefined, v, v)).toBe(false)
    expect(finishedAlready(v, { size: 10, mtime: 1001 }, v)).toBe(false)
    expect(finishedAlready(v, { size: 11, mtime: 1000 }, { size: 11, mtime: 1000 })).toBe(false)
    expect(finishedAlready(v, v, undefined)).toBe(false)
    expect(finishedAlready(v, v, { size: 9, mtime: 1000 })).toBe(false)
  })
})

describe('splitLanes: a batch of large files on several lanes of about equal bytes', () => {
  it('gives each lane files in the listing\'s order, the largest first to the lane with the fewest bytes', () => {
    expect(splitLanes([64, 64, 64, 64, 64], 2)).toEqual([[0, 2, 4], [1, 3]])
    expect(splitLanes([100, 10, 10, 10, 60], 2)).toEqual([[0], [1, 2, 3, 4]])
    expect(splitLanes([5, 5, 5], 3)).toEqual([[0], [1], [2]])
  })
  it('never more lanes than files, never an empty lane, one lane at least', () => {
    expect(splitLanes([7], 4)).toEqual([[0]])
    expect(splitLanes([7, 8], 1)).toEqual([[0, 1]])
    expect(splitLanes([7, 8], 0)).toEqual([[0, 1]])
    expect(splitLanes([], 2)).toEqual([])
  })
})

describe('requestBytes: a read request under the frame limit whatever its files are named', () => {
  it('bounds each file as JSON encodes it in the request, odd names and the largest numbers too', () => {
    const names = ['a', 'd/f0001.bin', 'with space/ü ñ 日本.txt', 'new\nline', 'ctl\u0001\u001f', 'emoji 😀/😀😀', '"quoted"\\', 'x'.repeat(4096), '\u0007'.repeat(4096)]
    for (const path of names) {
      const file = { path, offset: Number.MAX_SAFE_INTEGER, expect: { size: Number.MAX_SAFE_INTEGER, mtime: -Number.MAX_SAFE_INTEGER / 7 } }
      expect(Buffer.byteLength(`${JSON.stringify(file)},`)).toBeLessThanOrEqual(requestBytes(path))
    }
  })

  it('a full request of its bytes, a 16 KiB ticket and the rest fits one frame', () => {
    // The batch is sent once it reaches READ_REQUEST_BYTES: at most one file (4,096 units of 6 bytes) over it.
    expect(READ_REQUEST_BYTES + requestBytes('x'.repeat(4096)) + 16384 + 1024).toBeLessThanOrEqual(MAX_FRAME_BYTES)
  })
})

describe('linkDecision: which symbolic links links: copy makes (as rsync --safe-links)', () => {
  it('copies a relative link whose target, resolved by names from its directory, stays inside the tree', () => {
    expect(linkDecision('link', 'top.bin')).toEqual({ copy: true })
    expect(linkDecision('a/b/link', '../../top.bin')).toEqual({ copy: true })
    expect(linkDecision('a/link', './b/../b/two.bin')).toEqual({ copy: true })
    // The tree's own directory, and a target that does not exist (a dangling link is still a link).
    expect(linkDecision('a/link', '..')).toEqual({ copy: true })
    expect(linkDecision('a/link', 'missing/file')).toEqual({ copy: true })
  })

  it('skips, with the reason, a link that climbs out of the tree, even on the way back in', () => {
    expect(linkDecision('link', '..')).toMatchObject({ copy: false, reason: expect.stringContaining('out of the tree') })
    expect(linkDecision('a/link', '../../x')).toMatchObject({ copy: false, reason: expect.stringContaining('out of the tree') })
    expect(linkDecision('link', '../dataset/top.bin')).toMatchObject({ copy: false, reason: expect.stringContaining('out of the tree') })
  })

  it('skips an absolute link: it names the source host\'s paths', () => {
    expect(linkDecision('a/link', '/etc/passwd')).toMatchObject({ copy: false, reason: expect.stringContaining('absolute') })
  })
})
