import type { TreeEntry } from '../../mesh/index.ts'
import type { ProtocolPlugin } from '../../protocols/index.ts'
import { UnsupportedError, toStaccatoError, NotFoundError } from '../../mesh/index.ts'
import { extraDecision, treeSelector } from './policy.ts'
import type { TreeFilter } from './policy.ts'

export interface MirrorRow { path: string, state: 'deleted' | 'would-delete' | 'skipped', size: number, reason?: string }

export interface MirrorOptions {
  plugin: ProtocolPlugin
  /** The destination directory (ends with '/'). */
  dir: URL
  urlOf: (path: string) => URL
  filter: TreeFilter
  /** Whether the source listed this path (a file, a directory or a skipped entry). */
  inSource: (path: string) => boolean
  dryRun: boolean
  row: (r: MirrorRow) => Promise<void>
  signal: AbortSignal
}

/**
 * `deleteExtra`, once every file of the tree is in place: what the
 * destination directory holds and the source does not is removed (or, in a
 * dry run, listed as would-delete). The walk stays inside the destination
 * directory and does not follow links; a link is removed as a link. Entries
 * are removed deepest first, so an extra directory is empty by its turn; one
 * still holding excluded entries is kept. Returns how many were removed.
 */
export async function deleteExtra (opts: MirrorOptions): Promise<number> {
  const { plugin, signal } = opts
  if (plugin.walk === undefined || plugin.remove === undefined) throw new UnsupportedError(`destination: the ${plugin.scheme} plug-in cannot list and remove entries, so it cannot mirror a tree`)
  const keep = treeSelector(opts.filter)
  // Held until the walk ends: removing while a directory is being read could hide entries from it.
  const extras: TreeEntry[] = []
  let below: string | undefined
  try {
    for await (const e of plugin.walk(opts.dir, { signal })) {
      if (below !== undefined && e.path.startsWith(below)) continue
      below = undefined
      const verdict = extraDecision(keep, opts.inSource, e.path, e.type === 'directory')
      if (verdict === 'skip-below') below = `${e.path}/`
      else if (verdict === 'extra') extras.push(e)
    }
  } catch (err) {
    // A dry run against a destination not created yet: nothing there to delete.
    if (toStaccatoError(err) instanceof NotFoundError) return 0
    throw err
  }
  let removed = 0
  for (let i = extras.length - 1; i >= 0; i--) {
    signal.throwIfAborted()
    const e = extras[i]
    if (opts.dryRun) {
      await opts.row({ path: e.path, state: 'would-delete', size: e.size })
      continue
    }
    if (await plugin.remove(opts.urlOf(e.path), { signal })) {
      removed++
      await opts.row({ path: e.path, state: 'deleted', size: e.size })
    } else {
      await opts.row({ path: e.path, state: 'skipped', size: 0, reason: 'extra directory kept: it holds excluded entries' })
    }
  }
  return removed
}
