import type { ChecksumMode } from '../../mesh/index.ts'
import type { ObjectVersion } from '../../protocols/index.ts'
import type { JournalEntry } from '../journal.ts'

export interface ResumeInput {
  previous: JournalEntry | undefined
  /** The source as stat sees it now. */
  version: ObjectVersion
  mode: ChecksumMode
  /** A checksum mismatch asked for a fresh copy. */
  fromZero: boolean
  /** Both plug-ins can: the source reads from an offset, the destination continues a partial. */
  canResume: boolean
}

export type ResumeDecision = { offset: number, prefixDigest?: string } & ({ resume: true } | { resume: false, why?: string })

/** Whether a copy continues the journaled partial, and from where. Pure: the caller still verifies the kept prefix. */
export function decideResume (i: ResumeInput): ResumeDecision {
  const p = i.previous
  if (p === undefined || p.durableOffset === 0) return { resume: false, offset: 0 }
  if (i.fromZero) return { resume: false, offset: 0, why: 'asked to' }
  if (!sameVersion(p.version, i.version) || p.durableOffset > i.version.size) return { resume: false, offset: 0, why: 'source changed' }
  if (!i.canResume) return { resume: false, offset: 0, why: 'plug-ins cannot resume' }
  // A multi-stream partial resumes as ranges (copyFile); here, where ranges cannot be, it starts again.
  if (p.ranges !== undefined) return { resume: false, offset: 0, why: 'written in ranges' }
  // The prefix digest is in the mode it was journaled in: another mode cannot check it.
  if ((p.checksumMode ?? 'sha256') !== i.mode) return { resume: false, offset: 0, why: 'checksum mode changed' }
  return { resume: true, offset: p.durableOffset, prefixDigest: p.prefixDigest }
}

export function sameVersion (a: ObjectVersion, b: ObjectVersion): boolean {
  return a.size === b.size && a.mtime === b.mtime && a.etag === b.etag
}
