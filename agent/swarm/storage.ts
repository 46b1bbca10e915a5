import { UnsupportedError } from '../../mesh/index.ts'
import type { Manifest } from '../../mesh/index.ts'
import type { WriterAt } from '../../protocols/index.ts'
import type { Resolved } from '../resolve.ts'

/**
 * Where a participant's pieces live. The seed reads them from the source
 * through its plug-in's read(); a destination writes and reads them through
 * its plug-in's WriterAt. The session's protocol code is the same for both:
 * they differ here, in their storage, and nowhere else.
 */
export interface PieceStorage {
  read(offset: number, length: number): Promise<Uint8Array[]>
}

/** The seed: every read checks that the source is still the version the manifest was made from. */
export function sourceStorage (src: Resolved, manifest: Manifest): PieceStorage {
  const expect = { size: manifest.size, mtime: manifest.mtime }
  return {
    async read (offset, length) {
      const parts: Uint8Array[] = []
      for await (const chunk of src.plugin.read(src.url, { offset, length, expect })) parts.push(chunk)
      return parts
    }
  }
}

export function writerStorage (writer: WriterAt): PieceStorage {
  return {
    async read (offset, length) {
      return [await writer.readAt(offset, length)]
    }
  }
}

/** Opens a destination's object for pieces: only a plug-in that writes at offsets can hold a distribution. */
export async function openPieceWriter (dst: Resolved, key: string, size: number, resume: boolean): Promise<WriterAt> {
  const { plugin, url } = dst
  if (plugin.capabilities.writeAt !== true || plugin.openWriterAt === undefined) {
    throw new UnsupportedError(`the ${plugin.scheme} plug-in cannot write at offsets, so it cannot be a distribution's destination`)
  }
  return await plugin.openWriterAt(url, { key, size, resume })
}

/** Removes a destination's partial object with no writer open (after a restart): opened empty, then aborted. */
export async function discardPartial (dst: Resolved, key: string): Promise<void> {
  const writer = await openPieceWriter(dst, key, 0, false)
  await writer.abort({ keepPartial: false })
}
