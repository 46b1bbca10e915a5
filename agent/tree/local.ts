import { InternalError, PermissionDeniedError, ProtocolError, fromErrorInfo, namesDirectory, parseLocation } from '../../mesh/index.ts'
import type { TreeEntry, TreeMessage } from '../../mesh/index.ts'
import { listMessages, readMessages } from './holder.ts'
import type { TreeHolder } from './holder.ts'
import type { TreeSource } from './source.ts'
import { packBytes } from './client.ts'

/**
 * A tree in this agent's own volumes, read through the same holder code the
 * tree server runs (its confinement to the tree included), without a stream.
 */
export function localTreeSource (holder: TreeHolder, self: string, source: string): TreeSource {
  const loc = parseLocation(source, 'source')
  if (loc.kind !== 'agent' || loc.agent !== self || !namesDirectory(loc)) throw new PermissionDeniedError(`${source} is not a directory of agent '${self}'`)
  const dir = new URL(`file://${loc.url.pathname}`)
  return {
    async * list (filter, signal): AsyncGenerator<TreeEntry[]> {
      for await (const m of listMessages(holder, dir, filter)) {
        signal?.throwIfAborted()
        if (m.t !== 'entries') throw new ProtocolError(`tree listing: a '${m.t}' message where entries were expected`)
        yield m.entries
      }
    },
    async read (files, algorithm, handler, signal): Promise<void> {
      const out = readMessages(holder, dir, { source, files, algorithm, packed: handler.files !== undefined })[Symbol.asyncIterator]()
      try {
        for (;;) {
          signal?.throwIfAborted()
          const r = await out.next()
          if (r.done === true) return
          const m: TreeMessage | Uint8Array = r.value
          if (m instanceof Uint8Array) throw new InternalError('tree read: bytes outside a file')
          if (m.t === 'file') await handler.file({ path: m.path, size: m.size, mtime: m.mtime, length: m.length }, bytes(out, m.length))
          else if (m.t === 'file-end') await handler.end(m.path, { sha256: m.sha256, blake3: m.blake3 })
          else if (m.t === 'file-error') await handler.error(m.path, fromErrorInfo(m.error), m.now)
          else if (m.t === 'files' && handler.files !== undefined) await handler.files(m.files, await packBytes(bytes(out, m.length), m.length))
          else throw new ProtocolError(`tree read: a '${m.t}' message where files were expected`)
        }
      } finally {
        await out.return?.(undefined)
      }
    }
  }
}

/** The `length` raw bytes that follow a file's header. */
async function * bytes (out: AsyncIterator<TreeMessage | Uint8Array>, length: number): AsyncGenerator<Uint8Array> {
  let left = length
  while (left > 0) {
    const r = await out.next()
    if (r.done === true || !(r.value instanceof Uint8Array)) throw new InternalError(`tree read: ${left} bytes of a file missing`)
    left -= r.value.byteLength
    yield r.value
  }
}
