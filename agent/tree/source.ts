import type { TreeEntry, TreeOptions, TreeRequest } from '../../mesh/index.ts'
import { listTree, readFiles } from './client.ts'
import type { ReadHandler, TreePeer } from './client.ts'

export type ReadList = Extract<TreeRequest, { op: 'read' }>['files']

/**
 * Where a tree copy reads from: another agent over /staccato/tree/1
 * (remoteTreeSource), or this agent's own volumes (localTreeSource, for a
 * tree inside one agent). Both give the same listing and the same read
 * batches, handled the same way.
 */
export interface TreeSource {
  /** The tree's entries, selected by the include and exclude globs: a batch at a time (a message's), not an await per entry. */
  list: (filter: TreeOptions, signal?: AbortSignal) => AsyncIterable<TreeEntry[]>
  /** One batch of files, back to back, each handed to the handler in turn. */
  read: (files: ReadList, algorithm: 'sha256' | 'blake3' | undefined, handler: ReadHandler, signal?: AbortSignal) => Promise<void>
}

export function remoteTreeSource (peer: TreePeer): TreeSource {
  return {
    list: (filter, signal) => listTree(peer, filter, signal),
    read: async (files, algorithm, handler, signal) => { await readFiles(peer, files, algorithm, handler, signal) }
  }
}
