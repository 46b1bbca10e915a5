import type { FastifyReply, FastifyRequest } from 'fastify'
import { notFoundHandler } from './errors.ts'
import type { ApiInstance } from './types.ts'

interface Path { pattern: RegExp, methods: Set<string> }

function patternOf (url: string): RegExp {
  const parts = url.split('/').map(seg => seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
  return new RegExp(`^${parts.join('/')}/?$`)
}

/**
 * The not-found handler, told which methods a path has: a path that exists
 * under other methods answers 405 with \`Allow\` (RFC 9110), not 404. Must be
 * called before routes are added: it learns them as they are.
 */
export function methodAwareNotFound (app: ApiInstance): (req: FastifyRequest, reply: FastifyReply) => void {
  const paths = new Map<string, Path>()
  app.addHook('onRoute', route => {
    let path = paths.get(route.url)
    if (path === undefined) paths.set(route.url, path = { pattern: patternOf(route.url), methods: new Set() })
    for (const m of [route.method].flat()) path.methods.add(m)
  })
  return (req, reply) => {
    const url = req.url.split('?')[0]
    const allowed = [...new Set([...paths.values()].filter(p => p.pattern.test(url)).flatMap(p => [...p.methods]))].sort()
    if (allowed.length === 0) { notFoundHandler(req, reply); return }
    void reply.code(405).header('allow', allowed.join(', '))
      .send({ code: 'method_not_allowed', message: `${req.method} is not allowed on ${url}; it answers ${allowed.join(', ')}` })
  }
}
