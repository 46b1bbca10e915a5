import { constants } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { InvalidArgumentError, NoSpaceError, SourceChangedError } from '../mesh/index.ts'
import type { RangeOutput, WriterAt } from './contract.ts'
import type { OpenDirect } from './file-direct.ts'
import { openRangeOutput } from './file-range-output.ts'
import { ReadBack } from './file-read-back.ts'
import { fsError, isNoSpace } from './fs-errors.ts'
import { checkFreeSpace, commitPartial, openPartialFile, partialName, removePartialFile } from './file-partial.ts'

const { O_RDWR, O_CREAT } = constants

export interface FileWriterAtInit {
  /** Real parent directory joined with the target's base name. */
  target: string
  root: string
  what: string
  key: string
  size: number
  resume: boolean
  /** Set on the object at commit (epoch ms), as the sequential writer does. */
  mtime?: number
  /** Permission bits given to the object at commit. */
  mode?: number
  signal?: AbortSignal
  /** Ranges opened with openRange() go past the page cache where the file system takes it ('auto'), or through it ('off'). */
  directIo?: 'auto' | 'off'
  /** Opens a range's O_DIRECT descriptor (a seam for tests: a refusal injected here). */
  openDirect?: OpenDirect
}

/**
 * The file plug-in's WriterAt: the same partial file, defences and commit as
 * its sequential writer (file-partial.ts), written with positional I/O so that
 * pieces land in any order. The partial is sized up front and stays sparse
 * until written. A range written in order (openRange) is staged and goes
 * past the page cache where the file system takes it (file-range-output.ts).
 */
export async function openFileWriterAt (init: FileWriterAtInit): Promise<WriterAt> {
  const { root, what, size } = init
  const dir = dirname(init.target)
  const partial = join(dir, partialName(basename(init.target), init.key))
  let fh: FileHandle | undefined
  if (init.resume) {
    fh = await openPartialFile(partial, O_RDWR, root, what).catch(err => {
      if ((err as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT') return undefined
      throw err
    })
  }
  const resumed = fh !== undefined
  try {
    if (fh === undefined) {
      await checkFreeSpace(dir, size, what)
      fh = await openPartialFile(partial, O_RDWR | O_CREAT, root, what)
      await fh.truncate(0)
    } else {
      // A sparse partial occupies only the pieces already written.
      await checkFreeSpace(dir, size - (await fh.stat()).blocks * 512, what)
    }
    await fh.truncate(size)
  } catch (err) {
    await fh?.close()
    throw fsError(err, what)
  }
  return new FileWriterAt(init, fh, dir, partial, resumed)
}

class FileWriterAt implements WriterAt {
  readonly resumed: boolean
  #init: FileWriterAtInit
  #fh: FileHandle
  #dir: string
  #partial: string
  #state: 'open' | 'committed' | 'aborted' | 'failed' = 'open'
  #closed = false
  /** Ranges opened and not yet closed: closed with the handle, giving their staging memory back. */
  #ranges = new Set<RangeOutput>()
  #readBack: ReadBack

  constructor (init: FileWriterAtInit, fh: FileHandle, dir: string, partial: string, resumed: boolean) {
    this.#init = init
    this.#fh = fh
    this.#dir = dir
    this.#partial = partial
    this.resumed = resumed
    this.#readBack = new ReadBack(fh, async (offset, length) => await this.readAt(offset, length), init.directIo, init.openDirect)
  }

  async writeAt (offset: number, chunks: Uint8Array[]): Promise<void> {
    this.#ensure('open')
    this.#init.signal?.throwIfAborted()
    const length = chunks.reduce((n, c) => n + c.byteLength, 0)
    this.#checkRange(offset, length)
    let rest = chunks.filter(c => c.byteLength > 0)
    let at = offset
    // Bounded: every round writes at least one byte or throws.
    while (rest.length > 0) {
      const { bytesWritten } = await this.#io(async () => await this.#fh.writev(rest, at))
      if (bytesWritten <= 0) throw new NoSpaceError(`${this.#init.what}: the file system took no bytes`)
      at += bytesWritten
      rest = after(rest, bytesWritten)
    }
  }

  async openRange (offset: number): Promise<RangeOutput> {
    this.#ensure('open')
    this.#checkRange(offset, 0)
    const out = await openRangeOutput({ fh: this.#fh, offset, what: this.#init.what, io: async fn => await this.#io(fn), writeAt: async (at, chunks) => { await this.writeAt(at, chunks) }, directIo: this.#init.directIo, openDirect: this.#init.openDirect })
    const ranges = this.#ranges
    let at = offset
    const range: RangeOutput = {
      write: async chunk => {
        this.#ensure('open')
        this.#init.signal?.throwIfAborted()
        // Checked before staging: a staged byte past the size would only fail at a later flush.
        this.#checkRange(at, chunk.byteLength)
        at += chunk.byteLength
        await out.write(chunk)
      },
      flush: async () => {
        this.#ensure('open')
        await out.flush()
      },
      close: async () => {
        ranges.delete(range)
        await out.close()
      }
    }
    ranges.add(range)
    return range
  }

  async readBack (offset: number, length: number): Promise<Uint8Array> {
    this.#ensure('open')
    this.#checkRange(offset, length)
    return await this.#readBack.read(offset, length).catch(err => { throw fsError(err, this.#init.what) })
  }

  async readAt (offset: number, length: number): Promise<Uint8Array> {
    if (this.#state !== 'committed') this.#ensure('open')
    this.#checkRange(offset, length)
    const buffer = Buffer.allocUnsafe(length)
    let got = 0
    // Bounded: every round reads at least one byte or throws.
    while (got < length) {
      const { bytesRead } = await this.#fh.read(buffer, got, length - got, offset + got).catch(err => { throw fsError(err, this.#init.what) })
      if (bytesRead === 0) throw new SourceChangedError(`${this.#init.what}: the partial file shrank under its writer`)
      got += bytesRead
    }
    return buffer
  }

  async sync (): Promise<void> {
    this.#ensure('open')
    await this.#io(async () => await this.#fh.datasync())
  }

  async commit (): Promise<void> {
    this.#ensure('open')
    const { mtime, mode } = this.#init
    if (mode !== undefined) await this.#io(async () => await this.#fh.chmod(mode))
    // Half a millisecond more, as file-writer.ts does: a double of seconds loses the last nanoseconds.
    if (mtime !== undefined) await this.#io(async () => await this.#fh.utimes(new Date(), (mtime + 0.5) / 1000))
    await this.#io(async () => await this.#fh.sync())
    this.#state = 'failed'
    await commitPartial(this.#fh, { dir: this.#dir, partial: this.#partial, target: this.#init.target, what: this.#init.what })
    // The handle stays open: a finished destination keeps serving the pieces it holds.
    this.#state = 'committed'
  }

  async abort (opts: { keepPartial?: boolean } = {}): Promise<void> {
    if (this.#state === 'aborted') return
    const committed = this.#state === 'committed'
    this.#state = 'aborted'
    // Aborting keeps or removes the partial by name, not through the handle: a handle that fails to close changes neither.
    await this.#close().catch(() => {})
    if (!committed && opts.keepPartial !== true) await this.#removePartial()
  }

  #ensure (state: 'open'): void {
    if (this.#state !== state) throw new InvalidArgumentError(`${this.#init.what}: writer is already ${this.#state}`)
  }

  #checkRange (offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > this.#init.size) {
      throw new InvalidArgumentError(`${this.#init.what}: bytes ${offset}..${offset + length} are outside the object's ${this.#init.size} bytes`)
    }
  }

  /** Runs one system call; a full disk removes the partial at once (it could never be completed there). */
  async #io<T> (fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      if (isNoSpace(err)) {
        this.#state = 'failed'
        // The disk is full: the NoSpaceError below is what the caller needs, cleanup is best effort (a partial left behind is replaced by the next attempt).
        await this.#close().catch(() => {})
        await this.#removePartial().catch(() => {})
      }
      throw fsError(err, this.#init.what)
    }
  }

  async #close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.all([...this.#ranges].map(async r => await r.close().catch(() => {})))
    await this.#readBack.close().catch(() => {})
    await this.#fh.close()
  }

  async #removePartial (): Promise<void> {
    await removePartialFile(this.#partial, this.#init.what)
  }
}

/** `chunks` without their first `n` bytes. */
function after (chunks: Uint8Array[], n: number): Uint8Array[] {
  let skip = n
  let i = 0
  while (i < chunks.length && skip >= chunks[i].byteLength) skip -= chunks[i++].byteLength
  if (i === chunks.length) return []
  return [chunks[i].subarray(skip), ...chunks.slice(i + 1)]
}
