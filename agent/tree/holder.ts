import {
  InvalidArgumentError, PermissionDeniedError, SourceChangedError, TREE_BATCH, WIRE_VERSION, toStaccatoError
} from '../../mesh/index.ts'
import type { TreeEntry, TreeMessage, TreeRequest } from '../../mesh/index.ts'
import { resolveVolumePath } from '../../protocols/index.ts'
import type { ProtocolPlugin, StatResult, Volume, WholeRead } from '../../protocols/index.ts'
import type { AgentCounters } from '../counters.ts'
import type { TokenBucket } from '../rate-limit.ts'
import { digestOf, newHasher } from '../copy/checksum.ts'
import { linkDecision, treeSelector } from './policy.ts'

/** What holds a tree: the agent's volumes plug-in, and the volumes behind it (to confine each file to its tree). */
export interface TreeHolder {
  volumes: ProtocolPlugin
  volumeList: readonly Volume[]
  counters: AgentCounters
  upload?: TokenBucket
}

/** An `entries` message is sent once it holds this many bytes of paths, well under the 1 MiB frame limit. */
const ENTRIES_BYTES = 256 * 1024

/** `entries` messages of a tree's listing, selected by the request's globs. */
export async function * listMessages (opts: Pick<TreeHolder, 'volumes'>, dir: URL, req: Pick<Extract<TreeRequest, { op: 'list' }>, 'include' | 'exclude' | 'links'>): AsyncGenerator<TreeMessage> {
  if (opts.volumes.walk === undefined) throw new InvalidArgumentError('this agent cannot list directories')
  const keep = treeSelector({ include: req.include, exclude: req.exclude })
  // A listing is followed by reads: the read thread starts beside the walk, not in the first read's way.
  opts.volumes.warmUp?.('read')
  let batch: TreeEntry[] = []
  let bytes = 0
  // A directory left out is not entered: what is under it is skipped by its prefix.
  let excluded: string | undefined
  for await (const walked of opts.volumes.walk(dir)) {
    if (excluded !== undefined && walked.path.startsWith(excluded)) continue
    excluded = undefined
    const e = listed(walked, req.links === 'copy')
    if (e.type !== 'skipped' && !keep(e.path, e.type === 'directory')) {
      if (e.type === 'directory') excluded = `${e.path}/`
      continue
    }
    batch.push(e)
    bytes += Buffer.byteLength(e.path) + 128
    if (batch.length >= TREE_BATCH || bytes >= ENTRIES_BYTES) {
      yield { v: WIRE_VERSION, t: 'entries', entries: batch }
      batch = []
      bytes = 0
    }
  }
  if (batch.length > 0) yield { v: WIRE_VERSION, t: 'entries', entries: batch }
}

/**
 * An entry as the listing gives it: a symbolic link (an entry with a target)
 * becomes a `link` to copy when links are copied and its target stays inside
 * the tree, and is skipped otherwise, with the reason.
 */
function listed (e: TreeEntry, copyLinks: boolean): TreeEntry {
  if (e.target === undefined) return e
  const { target, ...rest } = e
  if (!copyLinks) return rest
  const d = linkDecision(e.path, target)
  return d.copy ? { path: e.path, type: 'link', size: 0, mtime: e.mtime, mode: e.mode, target } : { ...rest, reason: d.reason }
}

/** Files of a read batch checked (and, if small, read) ahead of the one being sent: each costs a few system calls, which overlap. */
const LOOKAHEAD = 16
/** A file up to this size is read whole while it is checked; 16 of them ahead keep at most 4 MiB in memory. */
const PREFETCH_BYTES = 256 * 1024

/** Files and bytes of one pack (a `files` message) at most: 64 × 4 KiB is 256 KiB, so the reader has the first pack soon. */
const PACK_FILES = 64
const PACK_BYTES = 4 * 1024 * 1024

/** A file sent in a pack: read whole from its start (memory: PACK_BYTES, far under the wire's TREE_PACK_BYTES). */
function packable (f: ReadFile): boolean {
  return f.offset === 0 && f.expect.size <= PREFETCH_BYTES
}

/** Small files read with one call (readFiles): one slice read while the one before is sent; at most 2 × 64 × 256 KiB in memory. */
const WHOLE_SLICE = 64

type ReadFile = Extract<TreeRequest, { op: 'read' }>['files'][number]
type Ready = { url: URL, header: StatResult, data?: Uint8Array[], digest?: string } | { error: unknown, now?: StatResult }

export interface ReadMessagesOptions {
  /**
   * A large file's chunks come from two read buffers taking turns, so a chunk
   * is only valid until the next message is asked for: for a consumer done
   * with each chunk by then (the direct socket seals it at once), not one
   * that queues it (a stream's send).
   */
  reuseBuffers?: boolean
}

/**
 * A read batch as it goes on the wire: for each file a `file` header, then
 * exactly `length` bytes of raw chunks, then `file-end`; or `file-error`.
 */
export async function * readMessages (opts: TreeHolder, dir: URL, req: Pick<Extract<TreeRequest, { op: 'read' }>, 'files' | 'algorithm' | 'source' | 'packed'>, how: ReadMessagesOptions = {}): AsyncGenerator<TreeMessage | Uint8Array> {
  const { volume, path: dirPath } = volumeAndPath(dir)
  const realDir = await resolveVolumePath(opts.volumeList, volume, dirPath)
  const urlOf = (path: string): URL => new URL(dir.href + path.split('/').map(encodeURIComponent).join('/'))
  const prepare = async (f: ReadFile): Promise<Ready> => {
    const url = urlOf(f.path)
    try {
      // Inside the tree the ticket names, not only inside the volume: a symbolic link in the tree leads nowhere else.
      const real = await resolveVolumePath(opts.volumeList, volume, `${dirPath}${dirPath === '' ? '' : '/'}${f.path}`)
      if (!real.startsWith(`${realDir}/`)) throw new PermissionDeniedError(`${f.path}: leaves the tree ${req.source}`)
      const st = await opts.volumes.stat(url)
      if (st.size !== f.expect.size || st.mtime !== f.expect.mtime) throw new SourceChangedError(`${f.path}: changed since it was listed (size ${f.expect.size} → ${st.size})`)
      if (f.offset > st.size) throw new InvalidArgumentError(`${f.path}: offset ${f.offset} is past its end (${st.size} bytes)`)
      if (f.offset > 0 || st.size > PREFETCH_BYTES) return { url, header: st }
      const data: Uint8Array[] = []
      for await (const chunk of opts.volumes.read(url, { offset: 0, length: st.size, expect: { size: st.size, mtime: st.mtime, etag: st.etag } })) data.push(chunk)
      return { url, header: st, data }
    } catch (err) {
      return { error: err, now: toStaccatoError(err) instanceof SourceChangedError ? await opts.volumes.stat(url).catch(() => undefined) : undefined }
    }
  }
  const readFiles = opts.volumes.readFiles?.bind(opts.volumes)
  /** The next files to prepare: a slice of small ones read with one call where the plug-in can (a few µs a file), or one file. */
  const slice = (from: number): Array<Promise<Ready>> => {
    if (readFiles === undefined) return [prepare(req.files[from])]
    const these = req.files.slice(from, from + WHOLE_SLICE)
    const whole = these.filter(f => f.offset === 0 && f.expect.size <= PREFETCH_BYTES)
    // Each file's URL built once: for the read, and kept for what its answer needs.
    const urls = whole.map(f => urlOf(f.path))
    // Read, checked and hashed in the plug-in's read thread: the event loop only frames and sends.
    const read = readFiles(whole.map((f, k) => ({ url: urls[k], expect: f.expect })), req.algorithm === undefined ? undefined : { algorithm: req.algorithm })
    read.catch(() => {})
    let k = 0
    return these.map(f => {
      if (!(f.offset === 0 && f.expect.size <= PREFETCH_BYTES)) return prepare(f)
      const at = k++
      return read.then(async rs => await readied(f, rs[at], urls[at]), async err => await readied(f, { error: toStaccatoError(err) }, urls[at]))
    })
  }
  const readied = async (f: ReadFile, r: WholeRead, url: URL): Promise<Ready> => {
    if ('error' in r) return { error: r.error, now: r.error instanceof SourceChangedError ? await opts.volumes.stat(url).catch(() => undefined) : undefined }
    // Inside the tree the ticket names, not only inside the volume: a symbolic link in the tree leads nowhere else.
    if (!r.real.startsWith(`${realDir}/`)) return { error: new PermissionDeniedError(`${f.path}: leaves the tree ${req.source}`) }
    return { url, header: r.version, data: [r.data], ...(r.digest === undefined ? {} : { digest: r.digest }) }
  }
  /**
   * Files from `from` on (small, whole) as one pack, up to PACK_FILES and
   * PACK_BYTES: the `files` message and its bytes, after a `file-error` for
   * each file that could not be read. `next`: the first file not in it.
   */
  const packFrom = async (from: number): Promise<{ messages: TreeMessage[], bytes?: Uint8Array, next: number }> => {
    const messages: TreeMessage[] = []
    const runs: Extract<TreeMessage, { t: 'files' }>['files'] = []
    const parts: Uint8Array[] = []
    let bytes = 0
    let j = from
    for (; j < req.files.length && packable(req.files[j]) && runs.length < PACK_FILES && bytes + req.files[j].expect.size <= PACK_BYTES; j++) {
      const g = req.files[j]
      const ready = await take(j)
      if ('error' in ready) { messages.push(fileError(g.path, ready.error, ready.now)); continue }
      const data = ready.data === undefined || ready.data.length !== 1 ? Buffer.concat(ready.data ?? []) : ready.data[0]
      // What the reader checks too: the whole file, as listed (readWhole and prepare checked its version).
      if (data.byteLength !== ready.header.size) { messages.push(fileError(g.path, new SourceChangedError(`${g.path}: ${data.byteLength} bytes read, ${ready.header.size} expected`), undefined)); continue }
      runs.push({ path: g.path, size: ready.header.size, mtime: ready.header.mtime, ...(req.algorithm === undefined ? {} : { [req.algorithm]: ready.digest ?? digestOf(req.algorithm, data) }) })
      parts.push(data)
      bytes += data.byteLength
    }
    if (runs.length === 0) return { messages, next: j }
    messages.push({ v: WIRE_VERSION, t: 'files', files: runs, length: bytes })
    return { messages, bytes: joined(parts, bytes), next: j }
  }
  const ahead: Array<Promise<Ready>> = []
  const take = async (i: number): Promise<Ready> => {
    while (ahead.length < Math.min(req.files.length, i + LOOKAHEAD)) ahead.push(...slice(ahead.length))
    const ready = await ahead[i]
    // Sent: the batch's memory goes with it.
    ahead[i] = Promise.resolve({ error: undefined })
    return ready
  }
  for (let i = 0; i < req.files.length; i++) {
    const f = req.files[i]
    if (req.packed === true && packable(f)) {
      // The run of small whole files from here, as packs: one message and one run of bytes for many files.
      let j = i
      while (j < req.files.length && packable(req.files[j])) {
        const pack = await packFrom(j)
        j = pack.next
        yield * pack.messages
        // Empty files have no bytes: nothing follows their message.
        if (pack.bytes !== undefined && pack.bytes.byteLength > 0) {
          if (opts.upload !== undefined) await opts.upload.take(pack.bytes.byteLength)
          yield pack.bytes
          opts.counters.bytesServed += pack.bytes.byteLength
        }
      }
      i = j - 1
      continue
    }
    const ready = await take(i)
    if ('error' in ready) {
      yield fileError(f.path, ready.error, ready.now)
      continue
    }
    const { url, header, data } = ready
    const version = { size: header.size, mtime: header.mtime, etag: header.etag }
    const length = header.size - f.offset
    // A small file read whole is hashed in one call; others as their chunks go.
    const whole = req.algorithm !== undefined && data?.length === 1 && f.offset === 0 ? { [req.algorithm]: ready.digest ?? digestOf(req.algorithm, data[0]) } : undefined
    const hash = req.algorithm !== undefined && whole === undefined ? newHasher(req.algorithm) : undefined
    let chunks: AsyncIterator<Uint8Array>
    let first: IteratorResult<Uint8Array>
    try {
      if (hash !== undefined && f.offset > 0) {
        for await (const chunk of opts.volumes.read(url, { offset: 0, length: f.offset, expect: version, reuseBuffers: true })) hash.update(chunk)
      }
      // The first chunk before the header: a file changed since it was checked is then reported alone, not by breaking the stream.
      // Reused buffers: a new 1 MiB buffer per chunk is garbage the GC must collect (the data server reuses them too).
      chunks = (data !== undefined ? each(data) : opts.volumes.read(url, { offset: f.offset, length, expect: version, reuseBuffers: how.reuseBuffers }))[Symbol.asyncIterator]()
      first = await chunks.next()
    } catch (err) {
      yield fileError(f.path, err, await opts.volumes.stat(url).catch(() => undefined))
      continue
    }
    yield { v: WIRE_VERSION, t: 'file', path: f.path, size: header.size, mtime: header.mtime, length }
    let sent = 0
    try {
      for (let r = first; r.done !== true; r = await chunks.next()) {
        const chunk = r.value
        hash?.update(chunk)
        if (opts.upload !== undefined) await opts.upload.take(chunk.byteLength)
        yield chunk
        sent += chunk.byteLength
        opts.counters.bytesServed += chunk.byteLength
      }
    } catch (err) {
      // Every byte went, and then the file turned out to have changed while it was read: that file alone fails (the reader may ask again).
      // Short of its length, the stream cannot go on: the error ends it (the reader keeps its partial and resumes).
      if (sent !== length || !(toStaccatoError(err) instanceof SourceChangedError)) throw err
      yield fileError(f.path, err, await opts.volumes.stat(url).catch(() => undefined))
      continue
    } finally {
      await chunks.return?.()
    }
    yield { v: WIRE_VERSION, t: 'file-end', path: f.path, ...(whole ?? (hash === undefined ? {} : { [hash.algorithm]: hash.digest() })) }
  }
}

/** The pack's bytes as one run: files read together lie side by side in one buffer already (readFiles), then no copy is made. */
function joined (parts: Uint8Array[], bytes: number): Uint8Array {
  const first = parts[0]
  let end = first.byteOffset
  for (const p of parts) {
    if (p.buffer !== first.buffer || p.byteOffset !== end) return Buffer.concat(parts, bytes)
    end += p.byteLength
  }
  return new Uint8Array(first.buffer, first.byteOffset, bytes)
}

async function * each (data: Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield * data
}

function fileError (path: string, err: unknown, now: StatResult | undefined): TreeMessage {
  const e = toStaccatoError(err)
  const changed = e instanceof SourceChangedError && now !== undefined ? { now: { size: now.size, mtime: now.mtime } } : {}
  return { v: WIRE_VERSION, t: 'file-error', path, error: e.toJSON(), ...changed }
}

export function volumeAndPath (dir: URL): { volume: string, path: string } {
  const segments = dir.pathname.split('/').filter(s => s !== '').map(s => decodeURIComponent(s))
  return { volume: segments[0], path: segments.slice(1).join('/') }
}
