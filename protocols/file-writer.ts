import { constants } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { InvalidArgumentError, Serial, SourceChangedError } from '../mesh/index.ts'
import type { OpOptions, Writer } from './contract.ts'
import { fsError, isNoSpace } from './fs-errors.ts'
import { checkFreeSpace, commitPartial, openPartialFile, partialName, removePartialFile } from './file-partial.ts'
import { DirectFile, DirectOutput, openDirect } from './file-direct.ts'
import { STAGE_BYTES } from './aligned-buffers.ts'
import type { OpenDirect } from './file-direct.ts'

export { isPartialName, partialName } from './file-partial.ts'

const { O_WRONLY, O_CREAT, O_RDONLY } = constants

/**
 * Small writes are copied into a buffer of this size; a full one goes to the
 * file in the background while a second fills, so memory stays bounded at
 * 2 MiB per writer.
 */
const COALESCE_BUFFER = 1 << 20
/** Without O_DIRECT, chunks at least this large go to the file from the caller's memory, uncopied. */
const DIRECT_WRITE = 64 << 10

export interface FileWriterInit {
  /** Real parent directory joined with the target's base name. */
  target: string
  root: string
  what: string
  offset: number
  size?: number
  key: string
  /** Set on the file at commit (epoch ms). */
  mtime?: number
  /** Permission bits set at commit. */
  mode?: number
  /** Leave the directory sync after the rename to the caller. */
  deferDirectorySync?: boolean
  signal?: AbortSignal
  /** Write past the page cache where the file system takes it (file-direct.ts); 'off' writes through it. */
  directIo?: 'auto' | 'off'
  /** Opens the O_DIRECT descriptor (a seam for tests: a refusal injected here). */
  openDirect?: OpenDirect
}

async function openPartial (init: FileWriterInit, partial: string): Promise<FileHandle> {
  const { offset, what, root } = init
  if (offset === 0) {
    // Truncated only once openPartialFile has checked what the name holds.
    const fh = await openPartialFile(partial, O_WRONLY | O_CREAT, root, what)
    await fh.truncate(0).catch(async err => { await fh.close(); throw fsError(err, what) })
    return fh
  }
  // Resuming needs the bytes before `offset`; without them only a restart from 0 helps, which is
  // what SourceChangedError (retryable, "restart from zero") tells the executor.
  const fh = await openPartialFile(partial, O_WRONLY, root, what).catch(err => {
    if ((err as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT') {
      throw new SourceChangedError(`${what}: cannot resume at offset ${offset}: the partial file is gone; restart from 0`, { cause: err })
    }
    throw err
  })
  const { size } = await fh.stat()
  if (size < offset) {
    await fh.close()
    throw new SourceChangedError(`${what}: cannot resume at offset ${offset}: the partial file holds only ${size} bytes; restart from 0`)
  }
  await fh.truncate(offset)
  return fh
}

/**
 * Below one staging buffer (a network record) O_DIRECT saves no copy worth a
 * second descriptor, its fstats and a write that waits on the disk: a file
 * whose size is known to be that small goes through the page cache.
 */
function worthDirect (init: FileWriterInit): boolean {
  return init.size === undefined || init.size - init.offset >= STAGE_BYTES
}

export async function openFileWriter (init: FileWriterInit): Promise<Writer> {
  const dir = dirname(init.target)
  const partial = join(dir, partialName(basename(init.target), init.key))
  if (init.size !== undefined) await checkFreeSpace(dir, init.size - init.offset, init.what)
  const fh = await openPartial(init, partial)
  const direct = init.directIo === 'off' || !worthDirect(init) ? undefined : await openDirect(fh, init.openDirect)
  return new FileWriter(init, fh, dir, partial, direct)
}

class FileWriter implements Writer {
  #init: FileWriterInit
  #fh: FileHandle
  #dir: string
  #partial: string
  #state: 'open' | 'committed' | 'aborted' | 'failed' = 'open'
  /** Bytes handed to the file; pending bytes follow. */
  #position: number
  #pending: Buffer | undefined
  #pendingLength = 0
  /** The coalesce buffer not being filled, once its write is done. */
  #spare: Buffer | undefined
  /** The write of a full coalesce buffer, running while the next one fills. */
  #writing: Promise<void> | undefined
  /** Its error, reported by the next call rather than as "writer is already failed". */
  #writeError: unknown
  /** Present while the file takes O_DIRECT: it then holds every byte's path to the file, and #position is its. */
  #direct: DirectOutput | undefined
  #tasks = new Serial()
  #closed = false

  constructor (init: FileWriterInit, fh: FileHandle, dir: string, partial: string, direct: FileHandle | undefined) {
    this.#init = init
    this.#fh = fh
    this.#dir = dir
    this.#partial = partial
    this.#position = init.offset
    if (direct !== undefined) this.#direct = new DirectOutput({ direct: new DirectFile(direct, fh, async fn => await this.#io(fn), init.what), position: init.offset })
  }

  write (chunk: Uint8Array): Promise<void> {
    return this.#serial(async () => {
      this.#ensureOpen()
      this.#init.signal?.throwIfAborted()
      if (this.#direct !== undefined) {
        await this.#direct.write(chunk)
        this.#position = this.#direct.position
        return
      }
      if (chunk.length >= DIRECT_WRITE) {
        await this.#flush()
        await this.#writeAll(chunk)
        return
      }
      if (this.#pendingLength + chunk.length > COALESCE_BUFFER) await this.#writeBehind()
      if (this.#pending === undefined) {
        this.#pending = this.#spare ?? Buffer.allocUnsafe(COALESCE_BUFFER)
        this.#spare = undefined
      }
      this.#pending.set(chunk, this.#pendingLength)
      this.#pendingLength += chunk.length
    })
  }

  /**
   * Makes the bytes written before this call durable and returns their end.
   * Writes after it do not wait for the disk: only the flush is in order with
   * them (a FileHandle closes only once the datasync is done).
   */
  sync (): Promise<number> {
    return this.#serial(async () => {
      this.#ensureOpen()
      await this.#flush()
      return this.#position
    }).then(async position => {
      await this.#io(() => this.#fh.datasync())
      return position
    })
  }

  commit (): Promise<void> {
    return this.#serial(async () => {
      this.#ensureOpen()
      await this.#flush()
      const { size, what } = this.#init
      if (size !== undefined && this.#position !== size) {
        throw new InvalidArgumentError(`${what}: ${this.#position} bytes written but the object is ${size} bytes; not committing`)
      }
      const { mtime, mode } = this.#init
      if (mode !== undefined) await this.#io(() => this.#fh.chmod(mode))
      // Half a millisecond more: seconds as a double lose the last nanoseconds, and the floor a
      // reader takes of the nanosecond mtime would then give the millisecond before the source's.
      if (mtime !== undefined) await this.#io(() => this.#fh.utimes(new Date(), (mtime + 0.5) / 1000))
      await this.#io(() => this.#fh.sync())
      this.#state = 'failed'
      try {
        await commitPartial(this.#fh, { dir: this.#dir, partial: this.#partial, target: this.#init.target, what, deferDirectorySync: this.#init.deferDirectorySync })
        this.#state = 'committed'
      } finally {
        await this.#close()
      }
    })
  }

  /** The bytes kept from an earlier attempt: [0, offset) of the partial as it was opened. */
  async * readPartial (opts: OpOptions = {}): AsyncGenerator<Uint8Array> {
    const { offset, what } = this.#init
    const fh = await openPartialFile(this.#partial, O_RDONLY, this.#init.root, what)
    try {
      let position = 0
      while (position < offset) {
        opts.signal?.throwIfAborted()
        const buffer = Buffer.allocUnsafe(Math.min(COALESCE_BUFFER, offset - position))
        const { bytesRead } = await fh.read(buffer, 0, buffer.length, position)
        if (bytesRead === 0) throw new SourceChangedError(`${what}: the partial file shrank while being read back`)
        position += bytesRead
        yield buffer.subarray(0, bytesRead)
      }
    } finally {
      await fh.close()
    }
  }

  abort (opts: { keepPartial?: boolean } = {}): Promise<void> {
    return this.#serial(async () => {
      if (this.#state === 'committed' || this.#state === 'aborted') return
      // Aborting: if the last bytes cannot be flushed, a resume finds the partial shorter than its offset and starts over from 0.
      if (this.#state === 'open' && opts.keepPartial === true) await this.#flush().catch(() => {})
      this.#state = 'aborted'
      await this.#close().catch(() => {})
      if (opts.keepPartial !== true) await this.#removePartial()
    })
  }

  #serial<T> (fn: () => Promise<T>): Promise<T> {
    return this.#tasks.run(fn)
  }

  #ensureOpen (): void {
    if (this.#writeError !== undefined) throw this.#writeError
    if (this.#state !== 'open') throw new InvalidArgumentError(`${this.#init.what}: writer is already ${this.#state}`)
  }

  /** Hands the pending bytes to the file and waits until they are there. */
  async #flush (): Promise<void> {
    if (this.#direct !== undefined) {
      await this.#direct.flush()
      return
    }
    await this.#writeBehind()
    await this.#writing
  }

  /** Starts writing the pending bytes, after the previous background write: one at a time keeps #position in order. */
  async #writeBehind (): Promise<void> {
    await this.#writing
    if (this.#pendingLength === 0 || this.#pending === undefined) return
    const buffer = this.#pending
    const length = this.#pendingLength
    this.#pending = undefined
    this.#pendingLength = 0
    const writing = this.#writeAll(buffer.subarray(0, length)).then(() => {
      this.#spare = buffer
      this.#writing = undefined
    }, err => {
      this.#writeError ??= err
      this.#writing = undefined
      throw err
    })
    // Whoever calls next sees the error (through #writing or #ensureOpen).
    writing.catch(() => {})
    this.#writing = writing
  }

  async #writeAll (data: Uint8Array): Promise<void> {
    let done = 0
    while (done < data.length) {
      const { bytesWritten } = await this.#io(() => this.#fh.write(data, done, data.length - done, this.#position))
      done += bytesWritten
      this.#position += bytesWritten
    }
  }

  /** Runs one system call; a full disk removes the partial at once (it could never be completed there). */
  async #io<T> (fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      this.#state = 'failed'
      if (isNoSpace(err)) {
        // The disk is full: the NoSpaceError is what the caller needs, cleanup is best effort (a partial left behind is replaced by the next attempt).
        await this.#close().catch(() => {})
        await this.#removePartial().catch(() => {})
      }
      throw fsError(err, this.#init.what)
    }
  }

  async #close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#direct?.close().catch(() => {})
    await this.#fh.close()
  }

  async #removePartial (): Promise<void> {
    await removePartialFile(this.#partial, this.#init.what)
  }
}
