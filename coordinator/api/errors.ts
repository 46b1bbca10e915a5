import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import { StaccatoError } from '../../mesh/index.ts'

export class UnauthorizedError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('unauthorized', message, false, options) }
}

/** A location names an agent the coordinator has never enrolled. */
export class UnknownAgentError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('unknown_agent', message, false, options) }
}

const STATUS_BY_CODE: Record<string, number> = {
  invalid_argument: 400,
  unauthorized: 401,
  permission_denied: 403,
  forbidden: 403,
  not_found: 404,
  invalid_state: 409,
  rate_limited: 429,
  unknown_agent: 422,
  unsupported: 501,
  unavailable: 503
}

/** Codes for Fastify's own errors (bad JSON, body too large, wrong content type …), by status. */
const CODE_BY_STATUS: Record<number, string> = {
  400: 'invalid_argument',
  404: 'not_found',
  408: 'timeout',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  503: 'unavailable'
}

export function errorHandler (err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): void {
  if (err instanceof StaccatoError) {
    const status = Object.hasOwn(STATUS_BY_CODE, err.code) ? STATUS_BY_CODE[err.code] : 400
    if (status === 401) void reply.header('www-authenticate', 'Bearer')
    void reply.code(status).send({ code: err.code, message: err.message })
    return
  }
  const fastifyErr = err as FastifyError
  if (fastifyErr.validation !== undefined) {
    void reply.code(400).send({
      code: 'invalid_argument',
      message: validationMessage(fastifyErr.validation, fastifyErr.validationContext ?? 'request')
    })
    return
  }
  const status = fastifyErr.statusCode
  if (status !== undefined && status >= 400 && status < 500) {
    void reply.code(status).send({ code: CODE_BY_STATUS[status] ?? 'bad_request', message: err.message })
    return
  }
  req.log.error({ err }, 'request failed')
  void reply.code(status !== undefined && status >= 500 ? status : 500).send({ code: 'internal', message: 'internal error' })
}

export function notFoundHandler (req: FastifyRequest, reply: FastifyReply): void {
  void reply.code(404).send({ code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` })
}

/**
 * One message naming the field, e.g. `body.checksum.value: must match pattern …`
 * or `body: unknown field 'colour'`. Only the first real error is told: the
 * rest usually follow from it.
 */
export function validationMessage (errors: FastifySchemaValidationError[], context: string): string {
  // TypeBox reports an extra property twice: as a `false` schema and as additionalProperties; keep the clearer one.
  const err = errors.find(e => e.keyword !== 'boolean') ?? errors[0]
  if (err === undefined) return `${context}: invalid`
  const path = context + (err.instancePath ?? '').split('/').filter(p => p !== '').map(p => `.${unescapePointer(p)}`).join('')
  const params = err.params as Record<string, unknown>
  if (err.keyword === 'additionalProperties') {
    const extra = params.additionalProperties ?? params.additionalProperty
    return `${path}: unknown field ${[extra].flat().map(f => `'${String(f)}'`).join(', ')}`
  }
  if (err.keyword === 'required') {
    const missing = params.requiredProperties ?? params.missingProperty
    return [missing].flat().map(f => `${path}.${String(f)}: is required`).join('; ')
  }
  if (err.keyword === 'const' || err.keyword === 'enum') {
    // A union of literals fails once per literal; together they are the list of allowed values.
    const allowed = errors
      .filter(e => e.instancePath === err.instancePath && (e.keyword === 'const' || e.keyword === 'enum'))
      .flatMap(e => { const p = e.params as Record<string, unknown>; return [p.allowedValue ?? p.allowedValues].flat() })
    return `${path}: must be ${allowed.length === 1 ? '' : 'one of '}${allowed.map(String).join(', ')}`
  }
  return `${path}: ${err.message ?? 'is invalid'}`
}

function unescapePointer (segment: string): string {
  return segment.replaceAll('~1', '/').replaceAll('~0', '~')
}
