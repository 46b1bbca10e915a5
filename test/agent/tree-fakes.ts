import type { MeshNode } from '../../mesh/index.ts'
import { newCounters } from '../../agent/counters.ts'
import type { TreeCopyDeps } from '../../agent/tree/copy-tree.ts'
import { FakeClock, MemJournal } from './copy/fakes.ts'

/** A tree copy's dependencies for a test in one process: no mesh, a journal in memory, a fake clock; `over` replaces any. */
export function treeCopyDeps (over: Partial<TreeCopyDeps> = {}): TreeCopyDeps {
  return {
    node: undefined as unknown as MeshNode,
    journal: new MemJournal(),
    counters: newCounters(),
    clock: new FakeClock(),
    log: () => {},
    syncEveryBytes: 1 << 20,
    syncEveryMs: 1000,
    progressEveryMs: 1000,
    progress: () => {},
    treeFiles: async () => {},
    ...over
  }
}
