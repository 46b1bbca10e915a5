import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { open, rm } from 'node:fs/promises'
import { noteGarbage } from '../mesh/index.ts'
import { giveBackAlignedSet, takeAlignedSet } from '../protocols/index.ts'

/**
 * The record size of the direct data socket: one record per 1 MiB chunk the
 * file plug-in reads (protocols/file.ts). The mesh's channel allows records of
 * up to 4 MiB, but fresh 4 MiB outputs cost more here than they save (their
 * pages are new to the process each time; measured: 0.41 CPU-s per GB to seal
 * against ~0.2 in the agents).
 */
const RECORD = 1024 * 1024

/** The parts of the floor, in CPU seconds of this process while each ran. */
export interface FloorParts { read: number, sha256: number, seal: number, open: number, write: number, sync: number }

/**
 * The floor of a verified, encrypted copy of a file, in this one process: the
 * work no design can avoid — read the file, hash it at the source and again
 * at the destination (sha256 twice), seal and open every record with
 * AES-256-GCM in the data socket's records, write it and sync it. The write
 * is the agents' cheapest: past the page cache (O_DIRECT, from a page-aligned
 * buffer the record is copied into) where the file system takes it, as the
 * file plug-in writes since the tenth session; a floor writing through the
 * page cache would charge a copy no design has to make. No framing, no streams, no event loop
 * hops beyond the file reads and writes, one read buffer used again and
 * again, nothing copied or concatenated: only node:crypto's own output
 * buffers are fresh (it cannot seal or open into a buffer of ours). Returns
 * the CPU seconds it took (user + system, this process: the file reads and
 * writes run on libuv's threads and count too), each part's share, and the wall time.
 */
export async function copyFloor (source: string, destination: string): Promise<{ cpuSeconds: number, parts: FloorParts, ms: number, bytes: number }> {
  const key = randomBytes(32)
  const iv = Buffer.alloc(12)
  const input = await open(source, 'r')
  const output = await open(destination, 'w')
  // A second descriptor past the page cache; none where the file system refuses O_DIRECT (then every write is buffered).
  let direct = await open(destination, constants.O_WRONLY | constants.O_DIRECT).catch(() => undefined)
  const staging = direct === undefined ? undefined : takeAlignedSet()
  let position = 0
  const buffer = Buffer.allocUnsafe(RECORD)
  const sourceHash = createHash('sha256')
  const destinationHash = createHash('sha256')
  const parts: FloorParts = { read: 0, sha256: 0, seal: 0, open: 0, write: 0, sync: 0 }
  // Nothing else runs in this process meanwhile, so the CPU it used between two marks is that part's.
  let mark = process.cpuUsage()
  const charge = (part: keyof FloorParts): void => {
    const used = process.cpuUsage(mark)
    parts[part] += (used.user + used.system) / 1e6
    mark = process.cpuUsage()
  }
  let bytes = 0
  let counter = 0
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  try {
    for (;;) {
      const { bytesRead } = await input.read(buffer, 0, RECORD)
      charge('read')
      if (bytesRead === 0) break
      const plain = buffer.subarray(0, bytesRead)
      sourceHash.update(plain)
      charge('sha256')
      // A per-direction counter nonce, as the channel uses.
      iv.writeUInt32BE(counter++, 8)
      const seal = createCipheriv('aes-256-gcm', key, iv)
      const sealed = seal.update(plain)
      seal.final()
      const tag = seal.getAuthTag()
      charge('seal')
      const unseal = createDecipheriv('aes-256-gcm', key, iv)
      unseal.setAuthTag(tag)
      const opened = unseal.update(sealed)
      unseal.final()
      // As the agents do: node:crypto's outputs are collected every few MiB, and their memory reused warm.
      noteGarbage(sealed.byteLength + opened.byteLength)
      charge('open')
      destinationHash.update(opened)
      charge('sha256')
      if (direct !== undefined && staging !== undefined && opened.byteLength === RECORD) {
        staging[0].set(opened)
        try {
          await direct.write(staging[0], 0, RECORD, position)
        } catch {
          // Opened, then refused at the first write: buffered from here on.
          await direct.close()
          direct = undefined
          await output.write(opened, 0, opened.byteLength, position)
        }
      } else {
        await output.write(opened, 0, opened.byteLength, position)
      }
      position += opened.byteLength
      charge('write')
      bytes += bytesRead
    }
    await output.datasync()
    charge('sync')
  } finally {
    await input.close()
    await output.close()
    await direct?.close()
    if (staging !== undefined) giveBackAlignedSet(staging)
  }
  if (sourceHash.digest('hex') !== destinationHash.digest('hex')) throw new Error('floor copy: digests differ')
  const cpu = process.cpuUsage(cpu0)
  const ms = performance.now() - t0
  await rm(destination)
  return { cpuSeconds: (cpu.user + cpu.system) / 1e6, parts, ms, bytes }
}
