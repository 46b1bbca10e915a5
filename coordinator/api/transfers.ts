import { Type } from 'typebox'
import { NotFoundError } from '../../mesh/index.ts'
import type { TransferInput, TransferRecord } from '../model.ts'
import { TERMINAL_STATES } from '../model.ts'
import { InvalidStateError } from '../store.ts'
import type { TransferStore } from '../store.ts'
import { locationAgents, parseEndpoints } from '../store-input.ts'
import { UnknownAgentError } from './errors.ts'
import {
  CreateHeaders, ListTransfersQuery, TransferIdParams, TransferInputSchema, TransferPage, TransferSchema, errorResponses
} from './schemas.ts'
import type { ApiInstance } from './types.ts'

export interface TransferRouteOptions {
  store: TransferStore
  /** Called after a transfer was canceled, so that dispatch can stop the agent running it. */
  onCancel?: (rec: TransferRecord) => void
}

const DEFAULT_PAGE = 100
const KNOWN_SHOWN = 20

export function transferRoutes (app: ApiInstance, opts: TransferRouteOptions): void {
  const { store } = opts

  app.post('/v1/transfers', {
    schema: {
      body: TransferInputSchema,
      headers: CreateHeaders,
      response: { 200: TransferSchema, 201: TransferSchema, ...errorResponses }
    }
  }, async (req, reply) => {
    requireKnownAgents(store, req.body)
    const { record, created } = await store.create(req.body, { tenant: req.tenant, idempotencyKey: req.headers['idempotency-key'] })
    if (created) void reply.header('location', `/v1/transfers/${record.id}`)
    return reply.code(created ? 201 : 200).send(record)
  })

  app.get('/v1/transfers', {
    schema: { querystring: ListTransfersQuery, response: { 200: TransferPage, ...errorResponses } }
  }, async (req) => {
    const { state, agent, label, after, limit } = req.query
    let labelFilter: { key: string, value: string } | undefined
    if (label !== undefined) {
      const colon = label.indexOf(':')
      labelFilter = { key: label.slice(0, colon), value: label.slice(colon + 1) }
    }
    return store.list({ tenant: req.tenant, state, agent, label: labelFilter, after, limit: limit ?? DEFAULT_PAGE })
  })

  app.get('/v1/transfers/:id', {
    schema: { params: TransferIdParams, response: { 200: TransferSchema, ...errorResponses } }
  }, async (req) => visible(store, req.params.id, req.tenant))

  app.post('/v1/transfers/:id/cancel', {
    schema: { params: TransferIdParams, response: { 200: TransferSchema, ...errorResponses } }
  }, async (req) => {
    const rec = visible(store, req.params.id, req.tenant)
    if (rec.state === 'canceled') return rec
    if (TERMINAL_STATES.has(rec.state)) throw new InvalidStateError(`transfer ${rec.id} already ${rec.state}; there is nothing to cancel`)
    let canceled: TransferRecord
    try {
      canceled = await store.transition(rec.id, 'canceled')
    } catch (err) {
      // Another request (or the transfer itself) got there first.
      const current = store.get(rec.id)
      if (err instanceof InvalidStateError && current?.state === 'canceled') return current
      throw err
    }
    try {
      opts.onCancel?.(canceled)
    } catch (err) {
      // The cancel is committed; failing to tell the agent now must not report it as failed.
      req.log.error({ err, transfer: canceled.id }, 'onCancel failed')
    }
    return canceled
  })

  app.delete('/v1/transfers/:id', {
    schema: { params: TransferIdParams, response: { 204: Type.Null(), ...errorResponses } }
  }, async (req, reply) => {
    visible(store, req.params.id, req.tenant)
    await store.remove(req.params.id)
    return reply.code(204).send(null)
  })
}

/** Another tenant's transfer answers exactly like a missing one. */
function visible (store: TransferStore, id: string, tenant: string): TransferRecord {
  const rec = store.get(id)
  if (rec === undefined || rec.tenant !== tenant) throw new NotFoundError(`no transfer '${id}'`)
  return rec
}

/**
 * The store accepts any agent name; the API refuses names nobody enrolled,
 * because such a transfer would wait in the queue forever.
 */
function requireKnownAgents (store: TransferStore, input: TransferInput): void {
  const endpoints = parseEndpoints(input)
  for (const field of ['source', 'destination'] as const) {
    for (const agent of locationAgents(endpoints[field])) {
      if (store.getAgent(agent) === undefined) {
        throw new UnknownAgentError(`${field}: no agent named '${agent}' is registered (known: ${knownAgents(store)})`)
      }
    }
  }
}

function knownAgents (store: TransferStore): string {
  const names = store.listAgents().map(a => a.name)
  if (names.length === 0) return 'none'
  const shown = names.slice(0, KNOWN_SHOWN).join(', ')
  return names.length > KNOWN_SHOWN ? `${shown} and ${names.length - KNOWN_SHOWN} more` : shown
}
