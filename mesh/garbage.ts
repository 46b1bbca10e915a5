import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/**
 * Bounds the memory the data path's throwaway buffers hold between garbage
 * collections. node:crypto cannot seal or open into a buffer of ours: every
 * record's output (1 MiB on the data path) is a fresh buffer outside the V8
 * heap, and V8 collects such memory only once about 64 MiB more of it has
 * piled up (its external-memory soft limit), in a full collection. Each
 * buffer is a small object in the young generation, so a minor collection
 * (a scavenge, well under a millisecond here) frees it; one after every
 * GARBAGE_BYTES of such buffers keeps what they hold near that, and reuses
 * warm memory instead of faulting in new pages (measured: a 1 GiB seal loop
 * peaks at 75 MiB instead of 130, at less CPU).
 */
export const GARBAGE_BYTES = 16 * 1024 * 1024

type Collect = (opts: { type: 'minor' | 'major' }) => void

let collect: Collect | undefined | null
let pending = 0

/** The engine's gc(), exposed for this process if it is not already; null if the engine refuses. */
function collector (): Collect | null {
  if (collect !== undefined) return collect
  const own = (globalThis as { gc?: Collect }).gc
  if (typeof own === 'function') {
    collect = own
    return collect
  }
  try {
    // The flag only decides whether a new context gets gc(): set it for one context, then unset it.
    setFlagsFromString('--expose-gc')
    const gc: unknown = runInNewContext('gc')
    collect = typeof gc === 'function' ? gc as Collect : null
  } catch {
    collect = null
  } finally {
    setFlagsFromString('--no-expose-gc')
  }
  return collect
}

/** `bytes` of fresh buffers became (or will soon be) garbage: collects the young generation every GARBAGE_BYTES. */
export function noteGarbage (bytes: number): void {
  pending += bytes
  if (pending < GARBAGE_BYTES) return
  pending = 0
  collector()?.({ type: 'minor' })
}
