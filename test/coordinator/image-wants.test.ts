import { describe, expect, it } from 'vitest'
import { bringsImage } from '../../coordinator/image-wants.ts'
import type { TransferRecord } from '../../coordinator/model.ts'

const digest = `sha256:${'a'.repeat(64)}`
const want = `oci://reg.example:5000/team/app@${digest}`

function rec (over: Partial<TransferRecord> = {}): Pick<TransferRecord, 'source' | 'destinations' | 'manifest' | 'state'> {
  return {
    source: 'oci://reg.example:5000/team/app:1.4?via=r1',
    state: 'active',
    destinations: [
      { destination: 'agent://h1/vol/preheat/app/', agent: 'h1', state: 'active', bytesDone: 0, updatedAt: '' },
      { destination: 'agent://h2/vol/preheat/app/', agent: 'h2', state: 'succeeded', bytesDone: 0, updatedAt: '' }
    ],
    ...over
  }
}

describe('a mirror\'s want joins a distribution already bringing the image', () => {
  it('matches by manifest digest once the seed made the manifest, by registry and repository before', () => {
    expect(bringsImage(rec(), 'h1', want)).toBe(true)
    expect(bringsImage(rec({ source: 'oci://reg.example:5000/team/other:1.4?via=r1' }), 'h1', want)).toBe(false)
    const manifest = { size: 1, mtime: 0, pieceSize: 1, sha256: 'x', pieces: ['x'], image: { digest, mediaType: 'm', manifest: '', blobs: [] } }
    expect(bringsImage(rec({ manifest }), 'h1', want)).toBe(true)
    expect(bringsImage(rec({ manifest: { ...manifest, image: { ...manifest.image, digest: `sha256:${'b'.repeat(64)}` } } }), 'h1', want)).toBe(false)
  })

  it('only for an agent still to receive it, and only for an image distribution', () => {
    expect(bringsImage(rec(), 'h2', want)).toBe(false)
    expect(bringsImage(rec(), 'h3', want)).toBe(false)
    const file = rec({ destinations: [{ destination: 'agent://h1/vol/app.tar', agent: 'h1', state: 'active', bytesDone: 0, updatedAt: '' }] })
    expect(bringsImage(file, 'h1', want)).toBe(false)
    expect(bringsImage({ ...rec(), destinations: undefined }, 'h1', want)).toBe(false)
  })
})
