/**
 * Page-aligned memory for O_DIRECT writes (file-direct.ts). An O_DIRECT
 * write from a misaligned address fails with EINVAL, and Node offers no
 * aligned allocation: a Buffer's memory comes from malloc, 16 bytes past a
 * page. A WebAssembly.Memory's ArrayBuffer is mmap'd, so it starts on a page
 * and so does every multiple of DIRECT_ALIGN inside it.
 */

/**
 * The alignment of an O_DIRECT write's address, offset and length: a page,
 * which is also the largest logical block size Linux file systems ask for
 * (ext4 and xfs take 512-byte multiples on most disks; 4096 suits every one).
 */
export const DIRECT_ALIGN = 4096

/** One staging buffer: a network record (1 MiB) per write, as the buffered writer's coalescing buffer. */
export const STAGE_BYTES = 1 << 20

/**
 * Buffers per writer: one filling from the network, one being written, one
 * queued behind it to absorb the disk's jitter. 3 MiB per writer at most.
 */
export const STAGES_PER_WRITER = 3

/** WebAssembly memory grows in pages of 64 KiB. */
const WASM_PAGE = 65536

/**
 * Sets kept for the next writer: each WebAssembly.Memory reserves several GiB
 * of address space (V8's guard regions), so sets are reused, not made per file.
 */
const KEEP_SETS = 8

const spare: Buffer[][] = []

/** The part of the WebAssembly global used here: TypeScript's libs for Node do not declare it. */
interface WasmMemory { readonly buffer: ArrayBuffer }
const { Memory } = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number, maximum: number }) => WasmMemory } }).WebAssembly

/** Sets handed out and not yet given back (tests check none leak). */
let out = 0

/** A writer's staging buffers, each page-aligned and STAGE_BYTES long. */
export function takeAlignedSet (): Buffer[] {
  out++
  const kept = spare.pop()
  if (kept !== undefined) return kept
  const pages = (STAGE_BYTES * STAGES_PER_WRITER) / WASM_PAGE
  const memory = new Memory({ initial: pages, maximum: pages })
  return Array.from({ length: STAGES_PER_WRITER }, (_, i) => Buffer.from(memory.buffer, i * STAGE_BYTES, STAGE_BYTES))
}

/** Gives a set back once no write uses any of its buffers. */
export function giveBackAlignedSet (set: Buffer[]): void {
  out--
  if (spare.length < KEEP_SETS) spare.push(set)
}

/** A set whose writes may still be running is let go to the GC rather than reused. */
export function dropAlignedSet (): void {
  out--
}

export function alignedSetsOut (): number {
  return out
}
