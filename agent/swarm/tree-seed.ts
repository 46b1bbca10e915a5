import { createHash } from 'node:crypto'
import { InvalidArgumentError, PermissionDeniedError, TREE_TABLE_BYTES } from '../../mesh/index.ts'
import type { Manifest, TreeManifest } from '../../mesh/index.ts'
import { resolveVolumePath } from '../../protocols/index.ts'
import type { ProtocolPlugin, Volume } from '../../protocols/index.ts'
import { listMessages, volumeAndPath } from '../tree/holder.ts'
import { fileSegments, fileUrl } from './file-table.ts'
import { PieceHasher } from './image.ts'
import { effectivePieceSize } from './manifest.ts'
import type { PieceStorage } from './storage.ts'

/**
 * A tree distribution through the swarm: the object its pieces cut is the
 * tree's files laid end to end (file-table.ts), so one manifest covers the
 * whole tree and a piece may span files, as in a multi-file torrent. The
 * seed lists and hashes the tree once; each destination writes every file
 * into its own partial beside its target, and renames a file into place as
 * soon as the pieces holding it arrived and the whole file hashed right.
 * The swarm's code does not know about files at all.
 */

type TreeFile = TreeManifest['files'][number]

export interface TreeManifestOptions {
  volumes: ProtocolPlugin
  volumeList: readonly Volume[]
  /** The source directory as a file:// URL of the volumes plug-in (ends in /). */
  dir: URL
  filter: { include?: string[], exclude?: string[] }
  pieceSize: number
  signal?: AbortSignal
}

/**
 * On the seed: lists the tree (selected by the globs; links and special
 * files skipped with their reason, as a tree copy does), then reads every
 * file once, hashing the pieces of the concatenation and each file whole.
 */
export async function treeManifest (o: TreeManifestOptions): Promise<Manifest> {
  const files: TreeFile[] = []
  const dirs: TreeManifest['dirs'] = []
  const skipped: TreeManifest['skipped'] = []
  let size = 0
  // The table's JSON size as it grows, each file counted with its digest (filled in below).
  let bytes = 0
  for await (const m of listMessages({ volumes: o.volumes }, o.dir, o.filter)) {
    if (m.t !== 'entries') continue
    for (const e of m.entries) {
      let row: TreeManifest['dirs'][number] | TreeManifest['skipped'][number] | TreeFile
      if (e.type === 'directory') dirs.push(row = { path: e.path, mode: e.mode })
      else if (e.type === 'skipped') skipped.push(row = { path: e.path, reason: e.reason ?? 'not a regular file' })
      else {
        files.push(row = { path: e.path, size: e.size, offset: size, mode: e.mode, mtime: e.mtime, sha256: '0'.repeat(64) })
        size += e.size
      }
      bytes += Buffer.byteLength(JSON.stringify(row)) + 1
    }
    if (bytes > TREE_TABLE_BYTES) {
      throw new InvalidArgumentError(`source: the tree's file table passes ${TREE_TABLE_BYTES / 1024} KiB at ${files.length} files; a distribution carries it in one control message, so send a tree this large to each destination as its own transfer`)
    }
  }
  const pieceSize = effectivePieceSize(size, o.pieceSize)
  const hasher = new PieceHasher(pieceSize)
  const confine = await confinement(o.volumeList, o.dir)
  for (const f of files) {
    await confine(f.path)
    const whole = createHash('sha256')
    for await (const chunk of o.volumes.read(fileUrl(o.dir, f.path), { offset: 0, expect: { size: f.size, mtime: f.mtime }, signal: o.signal })) {
      whole.update(chunk)
      hasher.update(chunk)
    }
    f.sha256 = whole.digest('hex')
  }
  const { pieces, sha256 } = hasher.finish()
  return { size, mtime: 0, pieceSize, sha256, pieces, tree: { files, dirs, skipped } }
}

/** Checks that a path of the tree leads to a file inside the tree: a link swapped in since the listing leads nowhere else. */
async function confinement (volumeList: readonly Volume[], dir: URL): Promise<(path: string) => Promise<void>> {
  const { volume, path: dirPath } = volumeAndPath(dir)
  const realDir = await resolveVolumePath(volumeList, volume, dirPath)
  return async path => {
    const real = await resolveVolumePath(volumeList, volume, `${dirPath}${dirPath === '' ? '' : '/'}${path}`)
    if (!real.startsWith(`${realDir}/`)) throw new PermissionDeniedError(`${path}: leaves the tree`)
  }
}

/** The seed's pieces, read from the files of the tree, each checked to be the version the manifest was made from. */
export function treeSourceStorage (manifest: Manifest, volumes: ProtocolPlugin, volumeList: readonly Volume[], dir: URL): PieceStorage {
  const { files } = manifest.tree as TreeManifest
  const checked = new Set<number>()
  let confine: ((path: string) => Promise<void>) | undefined
  return {
    async read (offset, length) {
      const parts: Uint8Array[] = []
      for (const s of fileSegments(files, offset, length)) {
        const f = files[s.file]
        if (!checked.has(s.file)) {
          confine ??= await confinement(volumeList, dir)
          await confine(f.path)
          checked.add(s.file)
        }
        for await (const chunk of volumes.read(fileUrl(dir, f.path), { offset: s.at, length: s.length, expect: { size: f.size, mtime: f.mtime } })) parts.push(chunk)
      }
      return parts
    }
  }
}

