import { Type } from 'typebox'
import { ALL_TENANTS, TENANT_PATTERN, parseDuration } from '../tokens.ts'
import type { TokenStore } from '../tokens.ts'
import { errorResponses } from './schemas.ts'
import type { ApiInstance } from './types.ts'

const Duration = Type.Union([
  Type.Integer({ minimum: 1, description: 'seconds' }),
  Type.String({ pattern: '^[0-9]{1,12}[smhd]?$', description: 'e.g. 90s, 15m, 1h, 30d' })
])
const Name = Type.String({ minLength: 1, maxLength: 128 })
const Timestamp = Type.String()

const RoleSchema = Type.Union([Type.Literal('reader'), Type.Literal('operator'), Type.Literal('admin')])

const CreateTokenBody = Type.Object({
  role: RoleSchema,
  tenant: Type.String({ pattern: `${TENANT_PATTERN}|^\\${ALL_TENANTS}$`, description: "a tenant, or '*' (all tenants) for an admin" }),
  name: Type.Optional(Name),
  expiresIn: Type.Optional(Duration)
}, { additionalProperties: false })

const CreateJoinTokenBody = Type.Object({
  name: Type.Optional(Name),
  expiresIn: Type.Optional(Duration),
  singleUse: Type.Optional(Type.Boolean({ description: 'spent by the first agent that enrolls with it' }))
}, { additionalProperties: false })

const Common = {
  id: Type.String(),
  name: Type.Optional(Type.String()),
  source: Type.String({ description: 'api, bootstrap (generated on first start) or config (command line)' }),
  createdAt: Timestamp,
  expiresAt: Type.Optional(Timestamp),
  revokedAt: Type.Optional(Timestamp)
}
const TokenView = Type.Object({ ...Common, role: RoleSchema, tenant: Type.String() })
const JoinTokenView = Type.Object({
  ...Common,
  singleUse: Type.Boolean(),
  usedAt: Type.Optional(Timestamp),
  usedBy: Type.Optional(Type.Object({ agent: Type.String(), peerId: Type.String() }))
})
const Secret = { token: Type.String({ description: 'shown only in this answer; the coordinator keeps its hash' }) }

const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }, { additionalProperties: false })

/** Token management: admin only (routes without `config.role` need admin). */
export interface TokenRouteOptions {
  tokens: TokenStore
  /** Where token changes are recorded (the coordinator's log): who made or revoked which token, never the token. */
  audit?: (msg: string, fields: Record<string, unknown>) => void
}

export function tokenRoutes (app: ApiInstance, opts: TokenRouteOptions): void {
  const { tokens } = opts
  const audit = opts.audit ?? ((msg, fields) => app.log.info(fields, msg))

  // Any token may ask what it is: a client (the dashboard) shows only the actions its role allows.
  app.get('/v1/whoami', {
    config: { role: 'reader' },
    schema: { response: { 200: Type.Object({ tokenId: Type.String(), role: RoleSchema, tenant: Type.String() }), ...errorResponses } }
  }, async req => ({ tokenId: req.principal.tokenId, role: req.principal.role, tenant: req.principal.tenant }))

  app.post('/v1/tokens', {
    schema: { body: CreateTokenBody, response: { 201: Type.Object({ ...Secret, ...TokenView.properties }), ...errorResponses } }
  }, async (req, reply) => {
    const { role, tenant, name, expiresIn } = req.body
    const { token, record } = await tokens.create({ role, tenant, name, expiresInSeconds: expiresIn !== undefined ? parseDuration(expiresIn) : undefined })
    audit('API token created', { tokenId: record.id, role, tenant, by: req.principal.tokenId })
    return reply.code(201).send({ token, ...record })
  })

  app.get('/v1/tokens', {
    schema: { response: { 200: Type.Object({ items: Type.Array(TokenView) }), ...errorResponses } }
  }, async () => ({ items: tokens.list() }))

  app.delete('/v1/tokens/:id', {
    schema: { params: IdParams, response: { 204: Type.Null(), ...errorResponses } }
  }, async (req, reply) => {
    await tokens.revoke(req.params.id)
    audit('API token revoked', { tokenId: req.params.id, by: req.principal.tokenId })
    return reply.code(204).send(null)
  })

  app.post('/v1/agent-tokens', {
    schema: { body: CreateJoinTokenBody, response: { 201: Type.Object({ ...Secret, ...JoinTokenView.properties }), ...errorResponses } }
  }, async (req, reply) => {
    const { name, expiresIn, singleUse } = req.body
    const { token, record } = await tokens.createJoinToken({ name, singleUse, expiresInSeconds: expiresIn !== undefined ? parseDuration(expiresIn) : undefined })
    audit('join token created', { joinTokenId: record.id, singleUse: record.singleUse, by: req.principal.tokenId })
    return reply.code(201).send({ token, ...record })
  })

  app.get('/v1/agent-tokens', {
    schema: { response: { 200: Type.Object({ items: Type.Array(JoinTokenView) }), ...errorResponses } }
  }, async () => ({ items: tokens.listJoinTokens() }))

  app.delete('/v1/agent-tokens/:id', {
    schema: { params: IdParams, response: { 204: Type.Null(), ...errorResponses } }
  }, async (req, reply) => {
    await tokens.revokeJoinToken(req.params.id)
    audit('join token revoked', { joinTokenId: req.params.id, by: req.principal.tokenId })
    return reply.code(204).send(null)
  })
}
