import { Type } from 'typebox'
import { InvalidArgumentError, NotFoundError } from '../../mesh/index.ts'
import type { Location } from '../../mesh/index.ts'
import type { TransferInput, TransferRecord } from '../model.ts'
import { TERMINAL_STATES } from '../model.ts'
import { InvalidStateError } from '../store.ts'
import type { TransferStore } from '../store.ts'
import { locationAgents, parseEndpoints } from '../store-input.ts'
import { withImageSeed } from '../image-seed.ts'
import type { ImageHolders } from '../image-seed.ts'
import { UnknownAgentError } from './errors.ts'
import { canSee, hasRole, ownTenant, tenantFilter } from './auth.ts'
import type { Principal } from './auth.ts'
import { checkLocationText, checkTenantLocation, checkWritable, mayUseAgent } from './policy.ts'
import type { TenantPolicy } from './policy.ts'
import { checkScheme, checkVolume, runningAgent } from './submit-checks.ts'
import {
  CreateHeaders, ListTransfersQuery, TransferIdParams, TransferInputSchema, TransferPage, TransferSchema, TreeFilePageSchema, TreeFilesQuery, errorResponses
} from './schemas.ts'
import type { ApiInstance } from './types.ts'

export interface TransferRouteOptions {
  store: TransferStore
  /** Called after a transfer was canceled, so that dispatch can stop the agent running it. */
  onCancel?: (rec: TransferRecord) => void
  /** Cancels one destination of a distribution (the others carry on). */
  onCancelDestination?: (rec: TransferRecord, destination: string) => Promise<TransferRecord>
  /** Which agents, volumes and schemes each tenant may use; unrestricted when absent. */
  tenants?: TenantPolicy
  /** Who seeded each image last (image-seed.ts). */
  imageHolders?: ImageHolders
}

const CancelQuery = Type.Object({
  destination: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'cancel only this destination (URL or agent name) of a distribution' }))
}, { additionalProperties: false })

const DEFAULT_PAGE = 100
const KNOWN_SHOWN = 20

export function transferRoutes (app: ApiInstance, opts: TransferRouteOptions): void {
  const { store } = opts

  app.post('/v1/transfers', {
    config: { role: 'operator' },
    schema: {
      body: TransferInputSchema,
      headers: CreateHeaders,
      response: { 200: TransferSchema, 201: TransferSchema, ...errorResponses }
    }
  }, async (req, reply) => {
    const tenants = opts.tenants ?? {}
    // The seed is one the caller could have named: another tenant's agent is neither chosen nor named in a refusal.
    const usable = store.listAgents().filter(a => mayUseAgent(tenants, ownTenant(req.principal), a.name))
    const input = withImageSeed(req.body, usable, opts.imageHolders)
    authorizeSubmission(store, input, req.principal, tenants)
    const { record, created } = await store.create(input, { tenant: ownTenant(req.principal), idempotencyKey: req.headers['idempotency-key'] })
    const via = input.destinations !== undefined && input.source.startsWith('oci://') ? new URL(input.source).searchParams.get('via') : null
    if (created && via !== null) opts.imageHolders?.note(input.source, via)
    if (created) void reply.header('location', `/v1/transfers/${record.id}`)
    return reply.code(created ? 201 : 200).send(record)
  })

  app.get('/v1/transfers', {
    config: { role: 'reader' },
    schema: { querystring: ListTransfersQuery, response: { 200: TransferPage, ...errorResponses } }
  }, async (req) => {
    const { state, agent, label, q, after, limit, order } = req.query
    let labelFilter: { key: string, value: string } | undefined
    if (label !== undefined) {
      const colon = label.indexOf(':')
      labelFilter = { key: label.slice(0, colon), value: label.slice(colon + 1) }
    }
    return store.list({ tenant: tenantFilter(req.principal), state, agent, label: labelFilter, text: q, after, limit: limit ?? DEFAULT_PAGE, order })
  })

  app.get('/v1/transfers/:id', {
    config: { role: 'reader' },
    schema: { params: TransferIdParams, response: { 200: TransferSchema, ...errorResponses } }
  }, async (req) => visible(store, req.params.id, req.principal))

  app.get('/v1/transfers/:id/files', {
    config: { role: 'reader' },
    schema: { params: TransferIdParams, querystring: TreeFilesQuery, response: { 200: TreeFilePageSchema, ...errorResponses } }
  }, async (req) => {
    const rec = visible(store, req.params.id, req.principal)
    return await store.listTreeFiles(rec.id, { state: req.query.state, after: req.query.after, limit: req.query.limit ?? 100 })
  })

  app.post('/v1/transfers/:id/cancel', {
    config: { role: 'operator' },
    schema: { params: TransferIdParams, querystring: CancelQuery, response: { 200: TransferSchema, ...errorResponses } }
  }, async (req) => {
    const rec = visible(store, req.params.id, req.principal)
    if (rec.state === 'canceled') return rec
    if (req.query.destination !== undefined) {
      if (rec.destinations === undefined || opts.onCancelDestination === undefined) throw new InvalidArgumentError(`destination: ${rec.id} is not a distribution; cancel it without ?destination`)
      if (TERMINAL_STATES.has(rec.state)) throw new InvalidStateError(`distribution ${rec.id} already ${rec.state}; there is nothing to cancel`)
      return await opts.onCancelDestination(rec, req.query.destination)
    }
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

  app.post('/v1/transfers/:id/retry', {
    config: { role: 'operator' },
    schema: { params: TransferIdParams, response: { 200: TransferSchema, 201: TransferSchema, ...errorResponses } }
  }, async (req, reply) => {
    const rec = visible(store, req.params.id, req.principal)
    if (rec.state !== 'failed' && rec.state !== 'canceled') throw new InvalidStateError(`transfer ${rec.id} is ${rec.state}; only a failed or canceled one can be retried`)
    // A finished record never runs again (its history stays as it was): a retry is a new transfer with the same input.
    const input = retryInput(rec)
    authorizeSubmission(store, input, req.principal, opts.tenants ?? {})
    // Keyed on the original: a second click (or a client's retried request) returns the same new transfer.
    const { record, created } = await store.create(input, { tenant: rec.tenant, idempotencyKey: `retry:${rec.id}` })
    void reply.header('location', `/v1/transfers/${record.id}`)
    return reply.code(created ? 201 : 200).send(record)
  })

  app.delete('/v1/transfers/:id', {
    config: { role: 'operator' },
    schema: { params: TransferIdParams, response: { 204: Type.Null(), ...errorResponses } }
  }, async (req, reply) => {
    visible(store, req.params.id, req.principal)
    await store.remove(req.params.id)
    return reply.code(204).send(null)
  })
}

function retryInput (rec: TransferRecord): TransferInput {
  const input: TransferInput = { source: rec.source, priority: rec.priority, retries: rec.retries, labels: rec.labels }
  if (rec.destinations !== undefined) input.destinations = rec.destinations.map(d => d.destination)
  else input.destination = rec.destination
  if (rec.checksum !== undefined) input.checksum = rec.checksum
  if (rec.checksumMode !== undefined) input.checksumMode = rec.checksumMode
  if (rec.overwrite !== undefined) input.overwrite = rec.overwrite
  if (rec.streams !== undefined) input.streams = rec.streams
  if (rec.tree !== undefined) Object.assign(input, rec.tree)
  if (rec.callbackUrl !== undefined) input.callbackUrl = rec.callbackUrl
  return input
}

/** Another tenant's transfer answers exactly like a missing one. */
function visible (store: TransferStore, id: string, principal: Principal): TransferRecord {
  const rec = store.get(id)
  if (rec === undefined || !canSee(principal, rec.tenant)) throw new NotFoundError(`no transfer '${id}'`)
  return rec
}

/**
 * Paths that could leave a volume are refused as sent; then the tenant's
 * allow-list (403). The store accepts any agent name; the API refuses names
 * nobody enrolled, because such a transfer would wait in the queue forever.
 * Only admins are told which agents exist. Volumes and schemes are checked
 * against what each agent registered, offline or not (400 naming both).
 */
export function authorizeSubmission (store: TransferStore, input: TransferInput, principal: Principal, tenants: TenantPolicy): void {
  checkLocationText(input.source, 'source')
  if (input.destination !== undefined) checkLocationText(input.destination, 'destination')
  input.destinations?.forEach((d, i) => checkLocationText(d, `destinations[${i}]`))
  const endpoints = parseEndpoints(input)
  const named: Array<[string, Location]> = [['source', endpoints.source], ...(endpoints.destinations ?? [endpoints.destination]).map((d, i): [string, Location] => [endpoints.destinations !== undefined ? `destinations[${i}]` : 'destination', d])]
  for (const [field, location] of named) {
    const agents = locationAgents(location)
    checkTenantLocation(tenants, ownTenant(principal), location, agents)
    for (const agent of agents) {
      const record = store.getAgent(agent)
      if (record === undefined) {
        const known = hasRole(principal, 'admin') ? ` (known: ${knownAgents(store)})` : ''
        throw new UnknownAgentError(`${field}: no agent named '${agent}' is registered${known}`)
      }
      checkVolume(record, location, field)
    }
  }
  for (const d of endpoints.destinations ?? [endpoints.destination]) checkWritable(store, d)
  // A distribution's plug-in source is read by its seed (the via); a copy's locations by the agent that runs it.
  const runner = endpoints.destinations !== undefined ? locationAgents(endpoints.source)[0] : runningAgent(endpoints.source, endpoints.destination)
  for (const [field, location] of named) checkScheme(store, location, field, runner)
}

function knownAgents (store: TransferStore): string {
  const names = store.listAgents().map(a => a.name)
  if (names.length === 0) return 'none'
  const shown = names.slice(0, KNOWN_SHOWN).join(', ')
  return names.length > KNOWN_SHOWN ? `${shown} and ${names.length - KNOWN_SHOWN} more` : shown
}
