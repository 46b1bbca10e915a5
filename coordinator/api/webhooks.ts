import { Type } from 'typebox'
import { TOPIC_LIMITS, WEBHOOK_ID_PATTERN } from '../events/index.ts'
import { viewerOf } from '../events/index.ts'
import type { EventServices, WebhookRecord } from '../events/index.ts'
import { ownTenant } from './auth.ts'
import { errorResponses } from './schemas.ts'
import type { ApiInstance } from './types.ts'

const WebhookInputSchema = Type.Object({
  url: Type.String({ minLength: 1, maxLength: 2048, description: 'http(s) URL the events are POSTed to' }),
  topics: Type.Array(Type.String({ minLength: 1, maxLength: TOPIC_LIMITS.length }), {
    minItems: 1, maxItems: TOPIC_LIMITS.patterns, description: 'patterns: * is one word, # any number of words'
  }),
  secret: Type.Optional(Type.String({ pattern: '^whsec_[A-Za-z0-9+/]+={0,2}$', maxLength: 100, description: 'whsec_<base64 of 24–64 bytes>; generated when absent' }))
}, { additionalProperties: false })

const WebhookSchema = Type.Object({
  id: Type.String(),
  tenant: Type.String(),
  role: Type.String({ description: 'the creator\'s role: it decides which events the webhook may receive' }),
  url: Type.String(),
  topics: Type.Array(Type.String()),
  enabled: Type.Boolean({ description: 'false once the endpoint answered 410 Gone' }),
  disabledReason: Type.Optional(Type.String()),
  disabledAt: Type.Optional(Type.String()),
  createdAt: Type.String()
})

const CreatedWebhook = Type.Object({
  ...WebhookSchema.properties,
  secret: Type.String({ description: 'shown only here: verify the webhook-signature header with it' })
})

const WebhookParams = Type.Object({ id: Type.String({ pattern: WEBHOOK_ID_PATTERN }) }, { additionalProperties: false })

const DeliverySchema = Type.Object({
  id: Type.String(),
  messageId: Type.String({ description: 'the webhook-id header, the same on every attempt' }),
  seq: Type.Integer(),
  topic: Type.String(),
  attempt: Type.Integer(),
  at: Type.String(),
  outcome: Type.Union([
    Type.Literal('delivered'), Type.Literal('retrying'), Type.Literal('failed'), Type.Literal('refused'), Type.Literal('gone'), Type.Literal('dropped')
  ]),
  status: Type.Optional(Type.Integer()),
  error: Type.Optional(Type.String()),
  ms: Type.Integer(),
  nextAttemptAt: Type.Optional(Type.String())
})

const DeliveriesQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 }))
}, { additionalProperties: false })

export interface WebhookRouteOptions { events: EventServices }

/** Webhook subscriptions of the caller's tenant, and their delivery logs. */
export function webhookRoutes (app: ApiInstance, opts: WebhookRouteOptions): void {
  const { events } = opts
  const { webhooks } = events

  app.post('/v1/webhooks', {
    config: { role: 'operator' },
    schema: { body: WebhookInputSchema, response: { 201: CreatedWebhook, ...errorResponses } }
  }, async (req, reply) => {
    const rec = await webhooks.create(req.principal, req.body)
    void reply.header('location', `/v1/webhooks/${rec.id}`)
    return await reply.code(201).send(rec)
  })

  app.get('/v1/webhooks', {
    config: { role: 'reader' },
    schema: { response: { 200: Type.Object({ items: Type.Array(WebhookSchema) }), ...errorResponses } }
  }, async (req) => ({ items: webhooks.list(viewerOf(req)).map(shown) }))

  // Static, so it wins over /v1/webhooks/:id (whose pattern would refuse it anyway).
  app.get('/v1/webhooks/callback-secret', {
    config: { role: 'operator' },
    schema: {
      description: 'the secret that signs this tenant\'s per-transfer callbacks (callbackUrl); made on first use',
      response: { 200: Type.Object({ secret: Type.String() }), ...errorResponses }
    }
  }, async (req) => ({ secret: await webhooks.callbackSecret(ownTenant(req.principal)) }))

  app.get('/v1/webhooks/:id', {
    config: { role: 'reader' },
    schema: { params: WebhookParams, response: { 200: WebhookSchema, ...errorResponses } }
  }, async (req) => shown(webhooks.visible(req.params.id, viewerOf(req))))

  app.delete('/v1/webhooks/:id', {
    config: { role: 'operator' },
    schema: { params: WebhookParams, response: { 204: Type.Null(), ...errorResponses } }
  }, async (req, reply) => {
    webhooks.visible(req.params.id, viewerOf(req))
    await events.removeWebhook(req.params.id)
    return await reply.code(204).send(null)
  })

  app.get('/v1/webhooks/:id/deliveries', {
    config: { role: 'reader' },
    schema: {
      params: WebhookParams,
      querystring: DeliveriesQuery,
      response: { 200: Type.Object({ items: Type.Array(DeliverySchema), pending: Type.Integer() }), ...errorResponses }
    }
  }, async (req) => {
    const rec = webhooks.visible(req.params.id, viewerOf(req))
    return { items: await events.outbox.deliveries(rec.id, req.query.limit ?? 100), pending: events.outbox.pendingFor(rec.id).length }
  })
}

/** Without the secret, which is shown only at creation. */
function shown (rec: WebhookRecord): Omit<WebhookRecord, 'secret'> {
  const { secret: _secret, ...rest } = rec
  return rest
}
