import { constants } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { DIRECT_ALIGN, STAGE_BYTES, dropAlignedSet, giveBackAlignedSet, takeAlignedSet } from './aligned-buffers.ts'
import { openDirect } from './file-direct.ts'
import type { OpenDirect } from './file-direct.ts'

/**
 * A partial's bytes read back past the page cache (O_DIRECT) into two
 * page-aligned buffers taken in turn: a multi-stream copy's ordered hash
 * reads most of the object back once its ranges are written past the page
 * cache, and a buffered read of them would fill the cache (and copy out of
 * it) while a fresh buffer per read costs page faults. Where O_DIRECT is off
 * or refused, `fallback` (readAt) reads as before. The kernel writes back a
 * range's dirty pages (the tails written through the ordinary descriptor)
 * before an O_DIRECT read of them, so the bytes are the file's.
 */
export class ReadBack {
  #fh: FileHandle
  #fallback: (offset: number, length: number) => Promise<Uint8Array>
  #directIo: 'auto' | 'off' | undefined
  #openWith: OpenDirect | undefined
  /** undefined: not tried yet; null: refused or off. */
  #direct: Promise<FileHandle | null> | undefined
  #set: Buffer[] | undefined
  #turn = 0
  #reading = 0

  constructor (fh: FileHandle, fallback: (offset: number, length: number) => Promise<Uint8Array>, directIo?: 'auto' | 'off', openWith?: OpenDirect) {
    this.#fh = fh
    this.#fallback = fallback
    this.#directIo = directIo
    this.#openWith = openWith
  }

  async read (offset: number, length: number): Promise<Uint8Array> {
    const direct = await this.#open()
    if (direct === null) return await this.#fallback(offset, length)
    this.#set ??= takeAlignedSet()
    const buffer = this.#set[this.#turn++ % 2]
    // O_DIRECT reads whole blocks at a block's offset: the bytes asked for are a window of it.
    const skip = offset % DIRECT_ALIGN
    const span = Math.min(STAGE_BYTES, Math.ceil((skip + length) / DIRECT_ALIGN) * DIRECT_ALIGN)
    let bytesRead: number
    this.#reading++
    try {
      ({ bytesRead } = await direct.read(buffer, 0, span, offset - skip))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
      // Opened with O_DIRECT but not taken at a read: the page cache from here on.
      await this.close()
      return await this.#fallback(offset, length)
    } finally {
      this.#reading--
    }
    const n = Math.min(length, bytesRead - skip)
    // A short read ends at the file's end: the caller's fallback check (readAt) names it.
    if (n <= 0) return await this.#fallback(offset, length)
    return buffer.subarray(skip, skip + n)
  }

  async close (): Promise<void> {
    const set = this.#set
    this.#set = undefined
    // A read still running may write into its buffer: that set goes to the GC, not to the next writer.
    if (set !== undefined) {
      if (this.#reading === 0) giveBackAlignedSet(set)
      else dropAlignedSet()
    }
    const direct = await this.#direct
    this.#direct = Promise.resolve(null)
    await direct?.close()
  }

  async #open (): Promise<FileHandle | null> {
    this.#direct ??= this.#directIo === 'off' ? Promise.resolve(null) : openDirect(this.#fh, this.#openWith, constants.O_RDONLY).then(d => d ?? null)
    return await this.#direct
  }
}
