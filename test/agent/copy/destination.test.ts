import { describe, it, expect } from 'vitest'
import { ExistsError, InvalidArgumentError, IsADirectoryError } from '../../../mesh/index.ts'
import { decideOverwrite, planDestination, sameSizeAndMtime } from '../../../agent/copy/destination.ts'

describe('planDestination: a trailing / names a directory', () => {
  it('a file sent to dir/ lands as dir/<its name>, as cp does', () => {
    expect(planDestination('agent://a/vol/x/disk.img', 'agent://b/vol/incoming/')).toBe('agent://b/vol/incoming/disk.img')
    expect(planDestination('agent://a/vol/disk.img', 'agent://b/vol/')).toBe('agent://b/vol/disk.img')
  })

  it('keeps odd names as one path segment', () => {
    const planned = planDestination('agent://a/vol/a%20b%C3%A9%0Ac', 'agent://b/vol/in/')
    expect(planned).toBe('agent://b/vol/in/a%20b%C3%A9%0Ac')
    expect(decodeURIComponent(new URL(planned).pathname.split('/').pop() ?? '')).toBe('a bé\nc')
  })

  it('a plug-in source gives its last path segment; a plug-in URL ending in / is its protocol\'s business', () => {
    expect(planDestination('https://example.test/files/data.bin?x=1', 'agent://b/vol/in/')).toBe('agent://b/vol/in/data.bin')
    expect(planDestination('agent://a/vol/f.bin', 'https://example.test/upload/?via=b')).toBe('https://example.test/upload/?via=b')
  })

  it('a destination without the slash is the file itself', () => {
    expect(planDestination('agent://a/vol/disk.img', 'agent://b/vol/copy.img')).toBe('agent://b/vol/copy.img')
  })

  it('refuses a source with no name to give, and a tree into a file name', () => {
    expect(() => planDestination('https://example.test/', 'agent://b/vol/in/')).toThrow(InvalidArgumentError)
    expect(() => planDestination('agent://a/vol/dir/', 'agent://b/vol/dir')).toThrow(/end the destination with \//)
  })

  it('a tree goes into the directory named', () => {
    expect(planDestination('agent://a/vol/dir/', 'agent://b/vol/copy/')).toBe('agent://b/vol/copy/')
  })
})

describe('decideOverwrite: decided before a byte moves', () => {
  const src = { size: 10, mtime: 1_700_000_000_123 }
  const dst = 'agent://b/vol/f'

  it('nothing there: copy, whatever the mode', () => {
    for (const mode of ['always', 'never', 'if-different'] as const) expect(decideOverwrite(mode, src, { kind: 'none' }, dst)).toBe('copy')
  })

  it('a directory there fails with is_a_directory in every mode', () => {
    for (const mode of ['always', 'never', 'if-different'] as const) {
      expect(() => decideOverwrite(mode, src, { kind: 'directory' }, dst)).toThrow(IsADirectoryError)
    }
  })

  it('always replaces, never refuses with exists', () => {
    expect(decideOverwrite('always', src, { kind: 'file', version: src }, dst)).toBe('copy')
    const e = (() => { try { decideOverwrite('never', src, { kind: 'file', version: src }, dst) } catch (err) { return err } })()
    expect(e).toBeInstanceOf(ExistsError)
    expect((e as ExistsError).code).toBe('exists')
  })

  it('if-different leaves a file of the same size and mtime, and copies over any other', () => {
    expect(decideOverwrite('if-different', src, { kind: 'file', version: { size: 10, mtime: src.mtime + 1 } }, dst)).toBe('unchanged')
    expect(decideOverwrite('if-different', src, { kind: 'file', version: { size: 11, mtime: src.mtime } }, dst)).toBe('copy')
    expect(decideOverwrite('if-different', src, { kind: 'file', version: { size: 10, mtime: src.mtime - 1000 } }, dst)).toBe('copy')
  })

  it('the mtime window is a millisecond', () => {
    expect(sameSizeAndMtime({ size: 1, mtime: 5 }, { size: 1, mtime: 6 })).toBe(true)
    expect(sameSizeAndMtime({ size: 1, mtime: 5 }, { size: 1, mtime: 7 })).toBe(false)
  })
})
