import { createHash } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NotFoundError } from '../../mesh/index.ts'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ApiInstance } from './types.ts'

export const UI_PREFIX = '/ui'

const UI_DIR = fileURLToPath(new URL('../../ui/', import.meta.url))

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png'
}

/** The front-end libraries, served from node_modules as ES modules: no build step, and nothing loaded from elsewhere. */
const VENDOR: Record<string, string> = {
  'preact.mjs': 'preact',
  'hooks.mjs': 'preact/hooks',
  'htm.mjs': 'htm',
  'uplot.mjs': 'uplot/dist/uPlot.esm.js',
  'uplot.css': 'uplot/dist/uPlot.min.css'
}

/** Bare specifiers the pages import, mapped to the vendored files. */
const IMPORT_MAP = JSON.stringify({
  imports: { preact: `${UI_PREFIX}/vendor/preact.mjs`, 'preact/hooks': `${UI_PREFIX}/vendor/hooks.mjs`, htm: `${UI_PREFIX}/vendor/htm.mjs`, uplot: `${UI_PREFIX}/vendor/uplot.mjs` }
})

interface Asset { body: Buffer, type: string, etag: string }

/**
 * The dashboard at /ui: a single page that uses the public REST API and the
 * event stream with the token the user signs in with, like any other client.
 * The assets are public (they hold no data), read once at start from ui/ and
 * a fixed list of node_modules files, so no request path ever reaches the
 * file system. The import map is the page's only inline script and the CSP
 * allows it by its hash, nothing else inline.
 */
export function uiRoutes (app: ApiInstance): void {
  const assets = loadAssets()
  const index = assets.get('index.html')
  if (index === undefined) throw new Error(`${UI_DIR}index.html is missing`)
  const csp = contentSecurityPolicy(`sha256-${createHash('sha256').update(IMPORT_MAP).digest('base64')}`)

  const serve = (name: string): Asset => {
    const asset = assets.get(name)
    if (asset === undefined) throw new NotFoundError(`no file '${name}' in the dashboard`)
    return asset
  }
  const handler = async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const name = (req.params as { '*'?: string })['*'] ?? ''
    const asset = name === '' || name === 'index.html' ? index : serve(name)
    void reply.header('content-type', asset.type)
      .header('content-security-policy', csp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cross-origin-opener-policy', 'same-origin')
      .header('etag', asset.etag)
      // Revalidated by etag on every load: after an upgrade the browser gets the new files, never a mix of old and new modules.
      .header('cache-control', 'no-cache')
    if (req.headers['if-none-match'] === asset.etag) return await reply.code(304).send()
    return await reply.send(asset.body)
  }
  app.get(UI_PREFIX, { config: { public: true }, schema: { hide: true } }, handler)
  app.get(`${UI_PREFIX}/*`, { config: { public: true }, schema: { hide: true } }, handler)
}

function contentSecurityPolicy (importMapHash: string): string {
  return [
    "default-src 'none'",
    `script-src 'self' '${importMapHash}'`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join('; ')
}

function loadAssets (): Map<string, Asset> {
  const assets = new Map<string, Asset>()
  const add = (name: string, body: Buffer): void => {
    const type = TYPES[extname(name)]
    if (type === undefined) return
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` })
  }
  for (const entry of readdirSync(UI_DIR, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    const name = path.slice(UI_DIR.length).split('\\').join('/')
    let body = readFileSync(path)
    if (name === 'index.html') body = Buffer.from(body.toString('utf8').replace('<!--import-map-->', `<script type="importmap">${IMPORT_MAP}</script>`))
    add(name, body)
  }
  for (const [file, specifier] of Object.entries(VENDOR)) add(`vendor/${file}`, readFileSync(fileURLToPath(import.meta.resolve(specifier))))
  return assets
}
