import { createHash } from 'node:crypto'
import type { Manifest } from '../../mesh/index.ts'
import type { ProtocolPlugin } from '../../protocols/index.ts'

/** Pieces per manifest at most; larger objects get larger pieces (keeps a manifest under one control frame). */
export const MAX_PIECES = 8192

export function effectivePieceSize (size: number, pieceSize: number): number {
  const needed = Math.ceil(size / MAX_PIECES)
  if (needed <= pieceSize) return pieceSize
  const MiB = 1024 * 1024
  return Math.ceil(needed / MiB) * MiB
}

export function pieceCount (m: { size: number, pieceSize: number }): number {
  return Math.max(1, Math.ceil(m.size / m.pieceSize))
}

export function pieceRange (m: { size: number, pieceSize: number }, piece: number): { offset: number, length: number } {
  const offset = piece * m.pieceSize
  return { offset, length: Math.max(0, Math.min(m.pieceSize, m.size - offset)) }
}

export interface ManifestCache {
  get(key: string): Promise<Manifest | undefined>
  put(key: string, value: Manifest): Promise<void>
}

/**
 * Computes the manifest of a source (every piece's sha256 and the whole
 * object's) in one pass, cached by (location, size, mtime, piece size) so a
 * second distribution of the same image does not read it again.
 */
export async function manifestFor (plugin: ProtocolPlugin, url: URL, pieceSize: number, cache: ManifestCache, signal?: AbortSignal): Promise<Manifest> {
  const st = await plugin.stat(url, { signal })
  const size = effectivePieceSize(st.size, pieceSize)
  const key = `${url.href}\0${st.size}\0${st.mtime}\0${st.etag ?? ''}\0${size}`
  const cached = await cache.get(key)
  if (cached !== undefined) return cached
  const whole = createHash('sha256')
  const pieces: string[] = []
  let piece = createHash('sha256')
  let inPiece = 0
  for await (const chunk of plugin.read(url, { offset: 0, expect: st, signal })) {
    whole.update(chunk)
    let at = 0
    while (at < chunk.byteLength) {
      const take = Math.min(size - inPiece, chunk.byteLength - at)
      piece.update(chunk.subarray(at, at + take))
      inPiece += take
      at += take
      if (inPiece === size) {
        pieces.push(piece.digest('hex'))
        piece = createHash('sha256')
        inPiece = 0
      }
    }
  }
  if (inPiece > 0 || pieces.length === 0) pieces.push(piece.digest('hex'))
  const manifest: Manifest = { size: st.size, mtime: st.mtime, pieceSize: size, sha256: whole.digest('hex'), pieces }
  await cache.put(key, manifest)
  return manifest
}
