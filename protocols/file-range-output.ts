import type { FileHandle } from 'node:fs/promises'
import { Serial } from '../mesh/index.ts'
import type { RangeOutput } from './contract.ts'
import { DirectFile, DirectOutput, openDirect } from './file-direct.ts'
import type { OpenDirect } from './file-direct.ts'

export interface RangeOutputInit {
  /** The partial's ordinary descriptor (the writer's, which closes it). */
  fh: FileHandle
  offset: number
  what: string
  /** Runs one system call and maps its failure (the writer's error handling). */
  io: <T>(fn: () => Promise<T>) => Promise<T>
  /** The range's bytes without staging (the page cache path): writeAt. */
  writeAt: (offset: number, chunks: Uint8Array[]) => Promise<void>
  directIo?: 'auto' | 'off'
  openDirect?: OpenDirect
}

/**
 * One range of a multi-stream copy written past the page cache, as the
 * sequential writer does (file-direct.ts): the ranges' chunks are not whole
 * blocks (they are the network's records), so each range stages its bytes in
 * page-aligned buffers of its own and writes whole blocks with O_DIRECT; a
 * flush writes the rest of a block through the ordinary descriptor. With
 * `directIo: 'off'`, or where the file system refuses O_DIRECT, the range is
 * written through the page cache as before (nothing staged). Each range has
 * its own O_DIRECT descriptor: DirectOutput closes its descriptor when it
 * gives O_DIRECT up or closes.
 */
export async function openRangeOutput (init: RangeOutputInit): Promise<RangeOutput> {
  const direct = init.directIo === 'off' ? undefined : await openDirect(init.fh, init.openDirect)
  if (direct === undefined) return unstaged(init.offset, init.writeAt)
  // Two buffers per range, not three: several ranges already keep the disk busy, and a third would be one more MiB of RSS per range.
  const out = new DirectOutput({ direct: new DirectFile(direct, init.fh, init.io, init.what), position: init.offset, stages: 2 })
  // A sync's flush comes from another stream than the range's writes: DirectOutput takes one call at a time.
  const serial = new Serial()
  return {
    write: async chunk => { await serial.run(async () => { await out.write(chunk) }) },
    flush: async () => { await serial.run(async () => { await out.flush() }) },
    // Not queued: the writer closes its ranges from inside a write that failed (a full disk), which the queue would wait for.
    // DirectOutput closes beside a running write as the sequential writer's does (its set then goes to the GC).
    close: async () => { await out.close() }
  }
}

function unstaged (offset: number, writeAt: RangeOutputInit['writeAt']): RangeOutput {
  let at = offset
  return {
    write: async chunk => {
      await writeAt(at, [chunk])
      at += chunk.byteLength
    },
    flush: async () => {},
    close: async () => {}
  }
}
