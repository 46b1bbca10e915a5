import { describe, expect, it } from 'vitest'
import { mirrorAllowed, parseMirrorPath, parseRange, upstreamOf } from '../../agent/mirror-policy.ts'
import { parseListen } from '../../agent/registry-mirror.ts'

const D = `sha256:${'a'.repeat(64)}`

describe('registry mirror policy', () => {
  it('reads the registry API paths it serves, and nothing else', () => {
    expect(parseMirrorPath('/v2/')).toEqual({ kind: 'base' })
    expect(parseMirrorPath('/v2/team/app/manifests/1.4')).toEqual({ kind: 'manifest', name: 'team/app', reference: '1.4' })
    expect(parseMirrorPath(`/v2/app/manifests/${D}`)).toEqual({ kind: 'manifest', name: 'app', reference: D })
    expect(parseMirrorPath(`/v2/a/b/c/blobs/${D}`)).toEqual({ kind: 'blob', name: 'a/b/c', digest: D })
    expect(parseMirrorPath('/v2/app/blobs/latest')).toBeUndefined()
    expect(parseMirrorPath('/v2/App/manifests/1')).toBeUndefined()
    expect(parseMirrorPath('/v2/../etc/manifests/1')).toBeUndefined()
    expect(parseMirrorPath('/v2/app/blobs/uploads/')).toBeUndefined()
    expect(parseMirrorPath('/v2/_catalog')).toBeUndefined()
  })

  it('mirrors exactly the repositories its patterns name', () => {
    const p = ['reg:5000/pub/*', 'reg:5000/team/app', 'other.io/*']
    expect(mirrorAllowed(p, 'reg:5000', 'pub/app')).toBe(true)
    expect(mirrorAllowed(p, 'reg:5000', 'pub/a/b')).toBe(true)
    expect(mirrorAllowed(p, 'reg:5000', 'public/app')).toBe(false)
    expect(mirrorAllowed(p, 'reg:5000', 'team/app')).toBe(true)
    expect(mirrorAllowed(p, 'reg:5000', 'team/app2')).toBe(false)
    expect(mirrorAllowed(p, 'other.io', 'x/y')).toBe(true)
    expect(mirrorAllowed(p, 'evil.io', 'pub/app')).toBe(false)
    expect(mirrorAllowed([], 'reg:5000', 'pub/app')).toBe(false)
  })

  it('takes the upstream from ?ns= (containerd) or the first pattern', () => {
    expect(upstreamOf(['reg:5000/pub/*'], null)).toBe('reg:5000')
    expect(upstreamOf(['reg:5000/pub/*'], 'other.io')).toBe('other.io')
    expect(upstreamOf([], null)).toBeUndefined()
  })

  it('reads one byte range of a Range header', () => {
    expect(parseRange(undefined, 100)).toBeUndefined()
    expect(parseRange('bytes=10-19', 100)).toEqual({ start: 10, end: 19 })
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 })
    expect(parseRange('bytes=90-200', 100)).toEqual({ start: 90, end: 99 })
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 })
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable')
    expect(parseRange('bytes=20-10', 100)).toBe('unsatisfiable')
    expect(parseRange('bytes=0-1,5-6', 100)).toBeUndefined()
  })

  it('listens on loopback when given a port alone', () => {
    expect(parseListen('5050')).toEqual({ host: '127.0.0.1', port: 5050 })
    expect(parseListen('[::1]:5050')).toEqual({ host: '::1', port: 5050 })
    expect(() => parseListen('localhost')).toThrow(/host:port/)
  })
})
