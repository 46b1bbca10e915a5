import type { IncomingMessage } from 'node:http'
import { InvalidArgumentError, NetworkError, UnsupportedError } from '../mesh/index.ts'
import type { WriteOptions, Writer } from './contract.ts'
import { networkError, redact, responseOf, startRequest, statusError } from './http-client.ts'
import type { HttpContext } from './http-client.ts'

/**
 * A PUT whose body is fed by write(). The body is always sent chunked, even
 * when the size is known: the server cannot complete the request before the
 * final empty chunk that commit() sends, so abort() (which drops the
 * connection) can never leave an object behind. Atomicity at the target is the
 * server's: nginx's dav module writes the body to a temporary file and renames
 * it into place.
 */
export function openPutWriter (ctx: HttpContext, url: URL, opts: WriteOptions): Writer {
  const what = `PUT ${redact(url)}`
  if (opts.offset !== 0) {
    throw new UnsupportedError(`${what}: an HTTP PUT cannot continue an object from offset ${opts.offset}; restart from 0`)
  }
  const req = startRequest(ctx, url, 'PUT', { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }, opts.signal)
  let state: 'open' | 'committed' | 'aborted' | 'failed' = 'open'
  let written = 0
  let response: IncomingMessage | undefined
  let failure: Error | undefined
  const answered = responseOf(req).then(res => { response = res; return res })
  // The server may answer (401, 413…) or drop the connection before the body is complete.
  const ended = answered.then(
    res => { throw statusError(res.statusCode ?? 0, what) },
    err => { failure = networkError(err, what, opts.signal); throw failure }
  )
  // Marks the rejection as handled until a write or commit() races `ended` and sees it.
  ended.catch(() => {})

  function ensureOpen (): void {
    if (state !== 'open') throw new InvalidArgumentError(`${what}: writer is already ${state}`)
    if (failure !== undefined) throw failure
    if (response !== undefined) throw statusError(response.statusCode ?? 0, what)
  }

  async function send (chunk: Uint8Array): Promise<void> {
    // Waiting for the callback (the chunk reached the socket) lets the caller reuse its buffer.
    const flushed = new Promise<void>((resolve, reject) => {
      req.write(chunk, err => err == null ? resolve() : reject(networkError(err, what, opts.signal)))
    })
    await Promise.race([flushed, ended])
  }

  return {
    async write (chunk) {
      ensureOpen()
      if (chunk.length === 0) return
      try {
        await send(chunk)
        written += chunk.length
      } catch (err) {
        state = 'failed'
        req.destroy()
        throw err
      }
    },

    async sync () {
      ensureOpen()
      // Nothing is durable at the server before the PUT completes.
      return 0
    },

    async commit () {
      ensureOpen()
      if (opts.size !== undefined && written !== opts.size) {
        throw new InvalidArgumentError(`${what}: ${written} bytes written but the object is ${opts.size} bytes; not committing`)
      }
      state = 'failed'
      req.end()
      let res: IncomingMessage
      try {
        res = await answered
      } catch (err) {
        throw networkError(err, what, opts.signal)
      }
      res.resume()
      const status = res.statusCode ?? 0
      if (status !== 200 && status !== 201 && status !== 204) throw statusError(status, what)
      await new Promise<void>((resolve, reject) => {
        res.once('end', resolve)
        res.once('error', err => reject(new NetworkError(`${what}: ${err.message}`, { cause: err })))
      })
      state = 'committed'
    },

    async abort () {
      if (state === 'committed' || state === 'aborted') return
      state = 'aborted'
      req.destroy()
    }
  }
}
