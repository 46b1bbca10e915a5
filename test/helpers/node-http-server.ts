import { randomUUID } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, rename, rm, stat, unlink } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve, sep } from 'node:path'
import { pipeline } from 'node:stream/promises'
import send from 'send'
import type { HttpServer } from './http-servers.ts'

/** nginx's escaping of variables in its access log: `"`, `\` and non-printable bytes as \xHH. */
export function escapeLogValue (value: string | undefined): string {
  if (value === undefined || value === '') return '-'
  return [...Buffer.from(value, 'latin1')].map(b => b < 0x20 || b >= 0x7f || b === 0x22 || b === 0x5c
    ? `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`
    : String.fromCharCode(b)).join('')
}

function decodedPath (req: IncomingMessage): string {
  const pathname = new URL(req.url ?? '/', 'http://x').pathname
  try {
    return decodeURIComponent(pathname)
  } catch {
    return pathname
  }
}

/** `root`-relative file of a request, or undefined when the path leaves the root. */
function fileOf (root: string, req: IncomingMessage): string | undefined {
  const file = resolve(root, `.${decodedPath(req)}`)
  return file.startsWith(root + sep) ? file : undefined
}

/**
 * PUT as nginx's dav module does it: the body goes to a temporary file outside
 * the root and is renamed into place only when complete, so an aborted upload
 * leaves nothing behind; missing parent directories are created.
 */
async function put (root: string, tmp: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const file = fileOf(root, req)
  if (file === undefined || file.endsWith(sep)) { res.writeHead(409).end(); return }
  const partial = join(tmp, randomUUID())
  try {
    await pipeline(req, createWriteStream(partial))
  } catch {
    await rm(partial, { force: true })
    res.destroy()
    return
  }
  const existed = await stat(file).then(() => true, () => false)
  await mkdir(dirname(file), { recursive: true })
  await rename(partial, file)
  res.writeHead(existed ? 204 : 201).end()
}

async function remove (root: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const file = fileOf(root, req)
  if (file === undefined) { res.writeHead(409).end(); return }
  await unlink(file).then(() => res.writeHead(204).end(), () => res.writeHead(404).end())
}

function get (root: string, req: IncomingMessage, res: ServerResponse): void {
  send(req, new URL(req.url ?? '/', 'http://x').pathname, { root, index: false, dotfiles: 'allow', etag: false })
    // A strong ETag, as nginx sends: send's own is weak, and If-Range needs a strong validator.
    .on('headers', (r: ServerResponse, _path: string, st: { size: number, mtimeMs: number }) => {
      r.setHeader('ETag', `"${Math.trunc(st.mtimeMs).toString(16)}-${st.size.toString(16)}"`)
    })
    .on('error', (err: { status?: number }) => { res.writeHead(err.status ?? 500).end() })
    .pipe(res)
}

/** Counts the body bytes a response sent, as nginx's $body_bytes_sent does. */
function countBody (res: ServerResponse): () => number {
  let bytes = 0
  const write = res.write.bind(res) as (chunk: unknown, ...rest: unknown[]) => boolean
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse
  const count = (chunk: unknown): void => {
    if (typeof chunk === 'string' || chunk instanceof Uint8Array) bytes += Buffer.byteLength(chunk)
  }
  res.write = ((chunk: unknown, ...rest: unknown[]) => { count(chunk); return write(chunk, ...rest) }) as typeof res.write
  res.end = ((...args: unknown[]) => { if (typeof args[0] !== 'function') count(args[0]); return end(...args) }) as typeof res.end
  return () => bytes
}

/** A Node HTTP server on 127.0.0.1 with `send` for GET/HEAD (Range, If-Range, If-Match) and PUT/DELETE. */
export async function startNodeHttpServer (): Promise<HttpServer> {
  const dir = await mkdtemp(join(tmpdir(), 'staccato-http-'))
  const root = join(dir, 'www')
  const tmp = join(dir, 'tmp')
  await mkdir(root)
  await mkdir(tmp)
  const log: string[] = []
  let inFlight = 0
  let drained: (() => void) | undefined
  const server = createServer((req, res) => {
    inFlight++
    const sent = countBody(res)
    res.once('close', () => {
      const h = req.headers
      log.push(`${req.method} ${decodedPath(req)} ${res.statusCode} range="${escapeLogValue(h.range)}" if_range="${escapeLogValue([h['if-range']].flat()[0])}" bytes=${sent()}`)
      if (--inFlight === 0) drained?.()
    })
    const handle = req.method === 'PUT'
      ? put(root, tmp, req, res)
      : req.method === 'DELETE'
        ? remove(root, req, res)
        : req.method === 'GET' || req.method === 'HEAD'
          ? Promise.resolve(get(root, req, res))
          : Promise.resolve(void res.writeHead(405).end())
    handle.catch(() => { if (!res.headersSent) res.writeHead(500).end(); else res.destroy() })
  })
  // nginx keeps an idle connection 75 s; Node's 5 s default let a busy test reuse a socket just as the server
  // closed it (ECONNRESET on a PUT under CPU load), a race the plug-in's tests against nginx never meet.
  server.keepAliveTimeout = 75_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    root,
    async accessLog () {
      // nginx writes a line when a request ends; wait (bounded) for those still being answered.
      if (inFlight > 0) {
        await Promise.race([
          new Promise<void>(resolve => { drained = resolve }),
          new Promise<void>(resolve => setTimeout(resolve, 5000).unref())
        ])
        drained = undefined
      }
      return [...log]
    },
    async stop () {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
      await rm(dir, { recursive: true, force: true })
    }
  }
}
