import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, utimes, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { expect } from 'vitest'
import type { StaccatoError } from '../../mesh/index.ts'
import { randomBytes, randomDigest, randomStream } from '../../protocols/index.ts'

/** The seed of the bytes a conformance object named `name` holds: the same for every plug-in. */
export function seedOf (name: string): string {
  return `conformance:${name}`
}

export async function sourceBytes (name: string, size: number, offset = 0): Promise<Buffer> {
  return await randomBytes(seedOf(name), offset, size)
}

export async function sourceDigest (name: string, size: number): Promise<string> {
  return await randomDigest(size, seedOf(name))
}

/** For harnesses whose objects are files (file, http via nginx's root, agent volumes). */
export async function writeSourceFile (path: string, name: string, size: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await pipeline(Readable.from(randomStream(seedOf(name), 0, size)), createWriteStream(path))
}

export async function collect (chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) parts.push(chunk)
  return Buffer.concat(parts)
}

export function sha256 (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function liveBytes (): number {
  // A second collection releases array buffers whose release the first one only scheduled.
  gc()
  gc()
  const m = process.memoryUsage()
  return m.arrayBuffers + m.heapUsed
}

/**
 * Live memory (heap + array buffers, after a full GC) above what it was when
 * the probe was made. Collecting first makes the number about what is still
 * referenced, not about when V8 chose to collect: an honest measure of
 * buffering, with no timing in it.
 */
export function memoryProbe (): { sample: () => void, peak: () => number } {
  const base = liveBytes()
  let peak = 0
  return {
    sample () {
      peak = Math.max(peak, liveBytes() - base)
    },
    peak: () => peak
  }
}

export const MiB = 1 << 20

/** 'dir/a b.bin' → 'dir/a%20b.bin' */
export function encodePath (name: string): string {
  return name.split('/').map(encodeURIComponent).join('/')
}

/**
 * seed, mutate and readBack for a harness whose objects are files under
 * `root` (the file plug-in's volume, nginx's document root, an agent's volume).
 */
export function filesUnder (root: string, url: (name: string) => URL): {
  url: (name: string) => URL
  seed: (name: string, size: number) => Promise<URL>
  mutate: (name: string) => Promise<void>
  readBack: (name: string) => Promise<Uint8Array | undefined>
} {
  return {
    url,
    async seed (name, size) {
      await writeSourceFile(join(root, name), name, size)
      return url(name)
    },
    async mutate (name) {
      const path = join(root, name)
      await writeFile(path, 'another version')
      // Servers that keep whole-second mtimes (nginx's ETag) must see another version too.
      const later = new Date(Date.now() + 5000)
      await utimes(path, later, later)
    },
    async readBack (name) {
      return await readFile(join(root, name)).catch(err => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw err
      })
    }
  }
}

/**
 * Expects a rejection with the error code of `Klass`. Codes, not classes: an
 * error that crossed the mesh is rebuilt from its code (fromErrorInfo), and the
 * code is what the executor and the API act on.
 */
export async function failsWith (promise: Promise<unknown>, Klass: new (message: string) => StaccatoError): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code: new Klass('').code })
}
