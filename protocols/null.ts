import { InvalidArgumentError, NotFoundError, UnsupportedError } from '../mesh/index.ts'
import type { ProtocolPlugin, WriteOptions, Writer } from './contract.ts'
import { checkOffset, checkWriteKey, failingIterable } from './util.ts'

export interface NullCounters {
  /** Bytes accepted by every writer, committed or not. */
  bytes: number
  commits: number
  aborts: number
}

export interface NullPlugin extends ProtocolPlugin {
  readonly counters: Readonly<NullCounters>
}

/**
 * null:// — a sink that counts bytes and discards them, for benchmarks and
 * tests. It "resumes" from any offset, since there is nothing to continue.
 */
export function nullSink (): NullPlugin {
  const counters: NullCounters = { bytes: 0, commits: 0, aborts: 0 }
  return {
    scheme: 'null',
    capabilities: { read: false, write: true, resume: true, list: false, checksum: false },
    counters,

    async stat (url: URL) {
      throw new NotFoundError(`${url.href}: null:// holds no objects`)
    },

    read (url: URL) {
      return failingIterable(new UnsupportedError(`${url.protocol}// is write-only: it cannot be a source`))
    },

    async write (url: URL, opts: WriteOptions): Promise<Writer> {
      checkOffset(url, opts.offset)
      checkWriteKey(opts.key)
      let length = opts.offset
      let state: 'open' | 'committed' | 'aborted' = 'open'
      const ensureOpen = () => {
        if (state !== 'open') throw new InvalidArgumentError(`${url.href}: writer is already ${state}`)
      }
      return {
        async write (chunk) {
          ensureOpen()
          opts.signal?.throwIfAborted()
          length += chunk.length
          counters.bytes += chunk.length
        },
        async sync () {
          ensureOpen()
          return length
        },
        async commit () {
          ensureOpen()
          state = 'committed'
          counters.commits++
        },
        async abort () {
          if (state !== 'open') return
          state = 'aborted'
          counters.aborts++
        }
      }
    }
  }
}
