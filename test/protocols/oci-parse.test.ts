import { describe, expect, it } from 'vitest'
import { parseChallenge } from '../../protocols/oci/auth.ts'
import { parseManifest, selectPlatform } from '../../protocols/oci/manifest.ts'
import { layoutIndex } from '../../protocols/oci/layout.ts'
import { parseReference } from '../../protocols/oci/reference.ts'

const D = (n: number): string => `sha256:${String(n).repeat(64).slice(0, 64)}`

describe('oci references', () => {
  it('takes apart host, repository, tag, digest and platform', () => {
    expect(parseReference(new URL('oci://reg.example:5000/team/app:1.4'))).toMatchObject({ registry: 'reg.example:5000', repository: 'team/app', tag: '1.4' })
    expect(parseReference(new URL('oci://reg.example/app'))).toMatchObject({ repository: 'app', tag: 'latest' })
    expect(parseReference(new URL(`oci://127.0.0.1:5000/a/b/c@${D(1)}?platform=linux/arm64/v8`))).toMatchObject({
      repository: 'a/b/c', digest: D(1), tag: undefined, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }
    })
  })

  it('refuses what a registry would not take, and credentials in the URL', () => {
    for (const bad of ['oci://r/App:1', 'oci://r/app@sha256:abc', 'oci://r/app:-x', 'oci://r/app?platform=linux', 'oci://r/app?via2=x', 'oci://u:p@r/app:1', 'oci:///app:1']) {
      expect(() => parseReference(new URL(bad)), bad).toThrow(expect.objectContaining({ code: 'invalid_argument' }))
    }
  })
})

describe('WWW-Authenticate challenges', () => {
  it('reads realm, service and scope of a Bearer challenge, and Basic', () => {
    expect(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull"')).toEqual({
      scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:team/app:pull' }
    })
    expect(parseChallenge('Basic realm="Registry Realm"')).toEqual({ scheme: 'basic', params: { realm: 'Registry Realm' } })
    expect(parseChallenge('Negotiate abc')).toBeUndefined()
    expect(parseChallenge(undefined)).toBeUndefined()
  })
})

describe('manifests and platforms', () => {
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    manifests: [
      { digest: D(1), size: 10, platform: { os: 'linux', architecture: 'amd64' } },
      { digest: D(2), size: 10, platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
      { digest: D(3), size: 10, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } }
    ]
  }))

  it('tells an index from a manifest by media type, Content-Type or shape', () => {
    expect(parseManifest(index, 'application/vnd.docker.distribution.manifest.list.v2+json', 'x')).toMatchObject({ kind: 'index' })
    expect(parseManifest(index, undefined, 'x')).toMatchObject({ kind: 'index', mediaType: 'application/vnd.oci.image.index.v1+json' })
    const schema2 = Buffer.from(JSON.stringify({ mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: { digest: D(4), size: 1 }, layers: [{ digest: D(5), size: 2 }] }))
    expect(parseManifest(schema2, undefined, 'x')).toMatchObject({ kind: 'manifest', config: { digest: D(4) }, layers: [{ digest: D(5), size: 2 }] })
    expect(() => parseManifest(Buffer.from('{"schemaVersion":1,"fsLayers":[]}'), 'application/vnd.docker.distribution.manifest.v1+prettyjws', 'x')).toThrow(/unsupported manifest type/)
    expect(() => parseManifest(Buffer.from('{"layers":[{"digest":"sha256:zz","size":1}],"config":{}}'), undefined, 'x')).toThrow(/descriptor/)
  })

  it('selects by os and architecture, and by variant when asked', () => {
    const { manifests } = parseManifest(index, undefined, 'x') as { manifests: Parameters<typeof selectPlatform>[0] }
    expect(selectPlatform(manifests, { os: 'linux', architecture: 'amd64' }, 'x').digest).toBe(D(1))
    expect(selectPlatform(manifests, { os: 'linux', architecture: 'arm' }, 'x').digest).toBe(D(2))
    expect(selectPlatform(manifests, { os: 'linux', architecture: 'arm', variant: 'v7' }, 'x').digest).toBe(D(3))
    expect(() => selectPlatform(manifests, { os: 'windows', architecture: 'amd64' }, 'x')).toThrow(expect.objectContaining({ code: 'not_found' }))
  })
})

describe('the layout index', () => {
  const entry = (digest: string, tag?: string) => ({ mediaType: 'm', digest, size: 1, ...(tag !== undefined ? { annotations: { 'org.opencontainers.image.ref.name': tag } } : {}) })

  it('replaces the entry of the same tag and keeps the others', () => {
    const first = layoutIndex(undefined, entry(D(1), '1.4'))
    const second = layoutIndex(Buffer.from(JSON.stringify(first)), entry(D(2), '1.5'))
    const third = layoutIndex(Buffer.from(JSON.stringify(second)), entry(D(3), '1.4'))
    expect(third.manifests.map(m => m.digest)).toEqual([D(2), D(3)])
    expect(layoutIndex(Buffer.from('not json'), entry(D(1))).manifests).toHaveLength(1)
  })
})
