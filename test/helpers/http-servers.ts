import { startNginx, nginxBinary } from './nginx.ts'
import { startNodeHttpServer } from './node-http-server.ts'

/** A real HTTP server with Range, If-Range, strong ETags and PUT, serving a temporary directory on 127.0.0.1. */
export interface HttpServer {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234 */
  url: string
  /** The directory the server serves (and PUTs into). */
  root: string
  /** Lines of the access log: `METHOD URI STATUS range="…" if_range="…" bytes=N`, values escaped as nginx does. */
  accessLog(): Promise<string[]>
  stop(): Promise<void>
}

export interface HttpServerKind {
  name: string
  start(): Promise<HttpServer>
}

/**
 * The servers the http plug-in is tested against: a Node server built on
 * `send` (brought by `npm ci`, so `npm test` needs nothing else installed)
 * everywhere, and nginx where it is installed. Under CI=true nginx is
 * required: its start fails loudly instead of the nginx cases being skipped.
 */
export function httpServers (): HttpServerKind[] {
  const kinds: HttpServerKind[] = [{ name: 'node (send)', start: startNodeHttpServer }]
  if (nginxBinary() !== undefined || process.env.CI === 'true') kinds.push({ name: 'nginx with dav', start: startNginx })
  return kinds
}
