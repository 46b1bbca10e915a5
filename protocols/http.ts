import type { ProtocolPlugin, ReadOptions, WriteOptions, Writer } from './contract.ts'
import { InvalidArgumentError } from '../mesh/index.ts'
import { createContext } from './http-client.ts'
import type { HttpOptions } from './http-client.ts'
import { readHttp, statHttp } from './http-read.ts'
import { openPutWriter } from './http-writer.ts'
import { checkOffset, checkWriteKey } from './util.ts'

export type { HttpOptions } from './http-client.ts'

function httpPlugin (scheme: 'http' | 'https', opts: HttpOptions): ProtocolPlugin {
  const ctx = createContext(opts)
  const check = (url: URL): void => {
    if (url.protocol !== `${scheme}:`) throw new InvalidArgumentError(`${url.href} is not an ${scheme}:// URL`)
  }
  return {
    scheme,
    // Reads resume with Range; a PUT cannot append, so writes always start from 0.
    capabilities: { read: true, write: true, resume: true, writeResume: false, list: false, checksum: false },

    async stat (url, o) {
      check(url)
      return await statHttp(ctx, url, o?.signal)
    },

    async * read (url: URL, o: ReadOptions) {
      check(url)
      yield * readHttp(ctx, url, o)
    },

    async write (url: URL, o: WriteOptions): Promise<Writer> {
      check(url)
      checkOffset(url, o.offset)
      checkWriteKey(o.key)
      return openPutWriter(ctx, url, o)
    },

    async close () {
      ctx.agents.http.destroy()
      ctx.agents.https.destroy()
    }
  }
}

/** http:// sources (GET with Range/If-Range) and WebDAV-style destinations (PUT). */
export function http (opts: HttpOptions = {}): ProtocolPlugin {
  return httpPlugin('http', opts)
}

export function https (opts: HttpOptions = {}): ProtocolPlugin {
  return httpPlugin('https', opts)
}
