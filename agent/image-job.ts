import { copyImageToLayout } from '../protocols/index.ts'
import type { BlobCheckpoint, OciPlugin, ProtocolPlugin } from '../protocols/index.ts'
import type { Job } from '../mesh/index.ts'
import type { Resolved } from './resolve.ts'
import { countBytes } from './counters.ts'
import type { AgentCounters } from './counters.ts'
import type { TokenBucket } from './rate-limit.ts'
import type { BlobIndex } from './blob-index.ts'
import type { Journal, JournalEntry } from './journal.ts'
import { entryForJob } from './journal.ts'

/** What an image job needs of the journal (the executor's narrow view of it). */
type ImageJournal = Pick<Journal, 'get' | 'commitOffset'>

/**
 * An image transfer: an oci:// source to a directory (the destination ends
 * in '/') is not one object piped into another but a plan of blob copies
 * into an OCI image layout (protocols/oci/layout.ts). Resume: a blob
 * committed by an earlier attempt is in the layout and not read again; a
 * blob cut off mid-way continues with Range, within the attempt or (after a
 * crash or a failed attempt) from the offset journaled for it. The journal
 * entry's version then names that blob (etag = its digest), not the source.
 */
export function isImageJob (src: Resolved, destination: string): boolean {
  return src.plugin.scheme === 'oci' && destination.endsWith('/') && isOciPlugin(src.plugin)
}

export function isOciPlugin (p: ProtocolPlugin): p is OciPlugin {
  return typeof (p as Partial<OciPlugin>).resolveImage === 'function'
}

export interface ImageJobOptions {
  job: Job
  src: Resolved
  dst: Resolved
  signal: AbortSignal
  counters: AgentCounters
  download?: TokenBucket
  journal: ImageJournal
  syncEveryBytes: number
  progressEveryMs: number
  progress: (bytesDone: number, bytesTotal: number) => void
  /** The agent's blob index: the layout's blobs are added to it, so that its mirror and its distributions find them. */
  blobs?: BlobIndex
}

function checkpointOf (entry: JournalEntry | undefined): BlobCheckpoint | undefined {
  const digest = entry?.version.etag
  if (entry === undefined || digest?.startsWith('sha256:') !== true || entry.prefixDigest === undefined || (entry.checksumMode ?? 'sha256') !== 'sha256') return undefined
  return { digest, offset: entry.durableOffset, prefixSha256: entry.prefixDigest }
}

export async function runImageJob (o: ImageJobOptions): Promise<{ sha256: string, bytes: number }> {
  const { counters, signal, journal, job } = o
  let last = 0
  const earlier = await journal.get(job.transferId)
  const entry: JournalEntry = entryForJob(job)
  const result = await copyImageToLayout({
    source: o.src.plugin as OciPlugin,
    url: o.src.url,
    dest: o.dst.plugin,
    dir: o.dst.url,
    key: job.transferId,
    signal,
    resume: checkpointOf(earlier),
    syncEveryBytes: o.syncEveryBytes,
    checkpoint: async c => {
      entry.version = { size: 0, mtime: 0, etag: c.digest }
      // A blob's prefix is hashed in sha256 (OCI digests), whatever the transfer's checksum mode.
      entry.checksumMode = 'sha256'
      entry.prefixDigest = c.prefixSha256
      await journal.commitOffset(entry, c.offset)
      counters.journalCommits++
    },
    onChunk: async n => {
      if (o.download !== undefined) await o.download.take(n, signal)
      counters.bytesReceived += n
      countBytes(counters.bytesIn, 'oci', n)
      countBytes(counters.bytesOut, o.dst.plugin.scheme, n)
    },
    onProgress: (done, total) => {
      const now = Date.now()
      if (now - last < o.progressEveryMs && done < total) return
      last = now
      o.progress(done, total)
    }
  })
  for (const d of result.blobs) await o.blobs?.add(d.digest, `${job.destination}blobs/sha256/${d.digest.slice('sha256:'.length)}`)
  // The record's sha256 is the manifest's digest: what names the image, and what skopeo shows as its Digest.
  return { sha256: result.digest.slice('sha256:'.length), bytes: result.bytes }
}
