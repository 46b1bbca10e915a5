import { constants } from 'node:fs'
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { NoSpaceError } from '../mesh/index.ts'
import { DIRECT_ALIGN, STAGES_PER_WRITER, STAGE_BYTES, dropAlignedSet, giveBackAlignedSet, takeAlignedSet } from './aligned-buffers.ts'

/**
 * A partial file's bytes written past the page cache (O_DIRECT): the
 * receiver of a copy spent 1.6–3.5 of its 3.5–5.5 CPU-s per GiB in the
 * kernel copying write()'s bytes into the page cache (session 9's profile);
 * an O_DIRECT write from page-aligned memory cost a tenth of that here.
 *
 * Chunks are copied into page-aligned staging buffers (aligned-buffers.ts);
 * a full one is written at its aligned offset while the next fills. What is
 * not a whole number of blocks — an unaligned start on resume, the bytes
 * left at a flush — goes through the file's ordinary descriptor. The bytes
 * of a flush that end inside a block stay staged, and that block is written
 * again, whole and with the same bytes before it, once the rest of it comes.
 * Durability is the caller's as before: O_DIRECT makes neither the data (a
 * disk's cache) nor the file's size durable, so syncs stay.
 */

const { O_WRONLY, O_DIRECT } = constants

/** How the O_DIRECT descriptor is opened: a seam where tests inject a file system that refuses it. */
export type OpenDirect = (path: string, flags: number) => Promise<FileHandle>

const openFile: OpenDirect = async (path, flags) => await open(path, flags)

/**
 * A second descriptor, with O_DIRECT, on the file `fh` has open: reopened
 * through /proc/self/fd, never by name (a name can be swapped), and checked
 * to be the same inode. Undefined when the file system refuses O_DIRECT
 * (EINVAL: some tmpfs, FUSE and NFS set-ups) or there is no /proc: the
 * writer then writes as it always did.
 */
export async function openDirect (fh: FileHandle, openWith: OpenDirect = openFile, access: number = O_WRONLY): Promise<FileHandle | undefined> {
  let direct: FileHandle
  try {
    direct = await openWith(`/proc/self/fd/${fh.fd}`, access | O_DIRECT)
  } catch {
    return undefined
  }
  const [a, b] = await Promise.all([fh.stat({ bigint: true }), direct.stat({ bigint: true })]).catch(() => [undefined, undefined])
  if (a === undefined || b === undefined || a.dev !== b.dev || a.ino !== b.ino) {
    await direct.close().catch(() => {})
    return undefined
  }
  return direct
}

export interface DirectOutputInit {
  direct: DirectFile
  /** Where the next byte goes; the file holds exactly the bytes before it. */
  position: number
  /** Staging buffers used of the set (at most STAGES_PER_WRITER): the others' pages are never touched. */
  stages?: number
}

/** EINVAL at the first O_DIRECT write: the file system opened it but does not take it. */
function refusesDirect (err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'EINVAL'
}

/**
 * A file's O_DIRECT descriptor beside its ordinary one. A refusal at the
 * first write gives O_DIRECT up for this file (decided once): that write and
 * every later one go through the ordinary descriptor.
 */
export class DirectFile {
  #direct: FileHandle | undefined
  #buffered: FileHandle
  #io: <T>(fn: () => Promise<T>) => Promise<T>
  #what: string
  /** One O_DIRECT write went through: an EINVAL after that is an error, not a refusal. */
  #worked = false

  /** `io` runs one system call and maps its failure (the writer's error handling); `buffered` stays the writer's to close. */
  constructor (direct: FileHandle, buffered: FileHandle, io: <T>(fn: () => Promise<T>) => Promise<T>, what: string) {
    this.#direct = direct
    this.#buffered = buffered
    this.#io = io
    this.#what = what
  }

  /** True while writes may go past the page cache. */
  get on (): boolean {
    return this.#direct !== undefined
  }

  /**
   * Writes all of `data` at `at`. With `direct` (data in page-aligned memory,
   * `at` a multiple of DIRECT_ALIGN) whole blocks go past the page cache;
   * anything else through the ordinary descriptor.
   */
  async write (data: Uint8Array, at: number, direct: boolean): Promise<void> {
    let done = 0
    // Bounded: every round writes at least one byte or throws.
    while (done < data.length) {
      const aligned = done % DIRECT_ALIGN === 0 && (data.length - done) % DIRECT_ALIGN === 0
      const n = await this.#io(async () => {
        const fh = this.#direct
        if (direct && aligned && fh !== undefined) {
          try {
            const { bytesWritten } = await fh.write(data, done, data.length - done, at + done)
            this.#worked = true
            return bytesWritten
          } catch (err) {
            // Given up meanwhile by a concurrent write (its descriptor closed under this one): the ordinary descriptor takes it.
            if (this.#direct === fh && (this.#worked || !refusesDirect(err))) throw err
            this.#direct = undefined
            await fh.close().catch(() => {})
          }
        }
        const { bytesWritten } = await this.#buffered.write(data, done, data.length - done, at + done)
        return bytesWritten
      })
      if (n <= 0) throw new NoSpaceError(`${this.#what}: the file system took no bytes`)
      done += n
    }
  }

  /** Gives O_DIRECT up (no aligned memory to be had, say): later writes go through the ordinary descriptor. */
  async giveUp (): Promise<void> {
    const fh = this.#direct
    this.#direct = undefined
    await fh?.close()
  }
}

/**
 * A sequential writer's way to the file past the page cache: chunks staged
 * in page-aligned buffers, a full one written while the next fills.
 */
export class DirectOutput {
  #file: DirectFile
  /** Taken at the first byte, so that writers opened ahead hold no memory. */
  #set: Buffer[] | undefined
  /** The set is page-aligned memory to give back (not ordinary buffers taken when none could be had). */
  #aligned = false
  #free: Buffer[] = []
  /** The buffer filling, starting at file offset #stageAt (a multiple of DIRECT_ALIGN). */
  #stage: Buffer | undefined
  #stageAt: number
  #stageLength = 0
  /** Writes of full buffers, oldest first; each runs after the one before it. */
  #inFlight: Array<Promise<void>> = []
  #last: Promise<void> = Promise.resolve()
  #closed = false
  #stages: number

  constructor (init: DirectOutputInit) {
    this.#file = init.direct
    this.#stageAt = init.position
    this.#stages = Math.min(STAGES_PER_WRITER, Math.max(2, init.stages ?? STAGES_PER_WRITER))
  }

  /** Bytes handed over: the file's end once flush() is done. */
  get position (): number {
    return this.#stageAt + this.#stageLength
  }

  async write (chunk: Uint8Array): Promise<void> {
    let done = 0
    // Bounded: each round stages or writes at least one byte.
    while (done < chunk.length) {
      if (this.#stage === undefined && this.#stageAt % DIRECT_ALIGN !== 0) {
        // A resumed start inside a block: up to its end through the ordinary descriptor.
        const n = Math.min(chunk.length - done, DIRECT_ALIGN - (this.#stageAt % DIRECT_ALIGN))
        await this.#file.write(chunk.subarray(done, done + n), this.#stageAt, false)
        this.#stageAt += n
        done += n
        continue
      }
      const stage = this.#stage ?? await this.#takeBuffer()
      this.#stage = stage
      const n = Math.min(chunk.length - done, STAGE_BYTES - this.#stageLength)
      stage.set(chunk.subarray(done, done + n), this.#stageLength)
      this.#stageLength += n
      done += n
      if (this.#stageLength === STAGE_BYTES) this.#submit()
    }
  }

  /**
   * Writes everything handed over and waits until it is in the file. Whole
   * blocks go direct; the rest of a block through the ordinary descriptor,
   * and it stays staged so that its block is later written whole.
   */
  async flush (): Promise<void> {
    await this.#last
    const stage = this.#stage
    if (stage === undefined || this.#stageLength === 0) return
    const whole = this.#stageLength - (this.#stageLength % DIRECT_ALIGN)
    if (whole > 0) await this.#file.write(stage.subarray(0, whole), this.#stageAt, true)
    const rest = this.#stageLength - whole
    if (rest > 0) await this.#file.write(stage.subarray(whole, this.#stageLength), this.#stageAt + whole, false)
    stage.copyWithin(0, whole, this.#stageLength)
    this.#stageAt += whole
    this.#stageLength = rest
    if (rest === 0) {
      this.#free.push(stage)
      this.#stage = undefined
    }
  }

  /** Closes the O_DIRECT descriptor (not the ordinary one: the writer's). Writes not flushed are dropped. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#set !== undefined && this.#aligned) {
      // A set with a write still running (a close from inside a failed write) is not reused: that write may still read it.
      if (this.#inFlight.length === 0) giveBackAlignedSet(this.#set)
      else dropAlignedSet()
    }
    this.#set = undefined
    this.#free = []
    this.#stage = undefined
    await this.#file.giveUp()
  }

  async #takeBuffer (): Promise<Buffer> {
    if (this.#set === undefined) {
      try {
        this.#set = takeAlignedSet()
        this.#aligned = true
      } catch {
        // No address space for another WebAssembly memory: ordinary buffers, through the page cache.
        this.#set = Array.from({ length: this.#stages }, () => Buffer.allocUnsafeSlow(STAGE_BYTES))
        await this.#file.giveUp()
      }
      this.#free = this.#set.slice(0, this.#stages)
    }
    // Bounded: each wait ends one write, which frees its buffer (or throws).
    while (this.#free.length === 0) await this.#inFlight[0]
    return this.#free.pop() as Buffer
  }

  /** Starts writing the full stage after the writes before it; its buffer comes back free when done. */
  #submit (): void {
    const stage = this.#stage as Buffer
    const at = this.#stageAt
    this.#stage = undefined
    this.#stageAt += STAGE_BYTES
    this.#stageLength = 0
    const writing = this.#last.then(async () => { await this.#file.write(stage, at, true) }).then(() => {
      this.#inFlight.shift()
      this.#free.push(stage)
    })
    // Its failure reaches the next write, flush or wait through #last and #inFlight.
    writing.catch(() => {})
    this.#inFlight.push(writing)
    this.#last = writing
  }
}
