import { Type } from 'typebox'
import type { TransferStore } from '../store.ts'
import { InvalidArgumentError } from '../../mesh/index.ts'
import { agentsLabelled, preheatInput } from '../preheat.ts'
import type { ImageHolders } from '../image-seed.ts'
import { ownTenant } from './auth.ts'
import { authorizeSubmission } from './transfers.ts'
import { mayUseAgent } from './policy.ts'
import type { TenantPolicy } from './policy.ts'
import { TransferSchema, errorResponses } from './schemas.ts'
import type { ApiInstance } from './types.ts'

const Name = Type.String({ minLength: 1, maxLength: 128 })

const PreheatBody = Type.Object({
  image: Type.String({ minLength: 1, maxLength: 4096, description: 'oci://registry/repository:tag (or @sha256:…, ?platform=os/arch)' }),
  agents: Type.Optional(Type.Array(Name, { minItems: 1, maxItems: 1000, description: 'the agents whose first pull should be local' })),
  labels: Type.Optional(Type.Record(Type.String({ maxLength: 63 }), Type.String({ maxLength: 256 }), { maxProperties: 64, description: 'instead of agents: every agent labelled with all of these (staccato agent --label)' })),
  via: Type.Optional(Name),
  volume: Type.Optional(Name)
}, { additionalProperties: false })

export function imageRoutes (app: ApiInstance, opts: { store: TransferStore, tenants?: TenantPolicy, imageHolders?: ImageHolders }): void {
  const { store } = opts
  app.post('/v1/images/preheat', {
    config: { role: 'operator' },
    schema: {
      body: PreheatBody,
      response: { 201: TransferSchema, ...errorResponses }
    }
  }, async (req, reply) => {
    // Without a via, the agent that seeded this image last reads it again from its store, when it is online.
    const holder = opts.imageHolders?.get(req.body.image)
    // Only a holder the caller could have named itself: another tenant's agent is not lent to it.
    const usable = holder !== undefined && store.getAgent(holder)?.online === true && mayUseAgent(opts.tenants ?? {}, ownTenant(req.principal), holder)
    const via = req.body.via ?? (usable ? holder : undefined)
    const { agents, labels, ...rest } = req.body
    if ((agents === undefined) === (labels === undefined)) throw new InvalidArgumentError('give either agents or labels (the agents to preheat)')
    const chosen = agents ?? agentsLabelled(store.listAgents(), labels ?? {})
    if (chosen.length === 0) throw new InvalidArgumentError(`labels: no agent is labelled ${Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')}`)
    const input = preheatInput({ ...rest, agents: chosen, ...(via !== undefined ? { via } : {}) }, name => store.getAgent(name))
    authorizeSubmission(store, input, req.principal, opts.tenants ?? {})
    const { record } = await store.create(input, { tenant: ownTenant(req.principal) })
    opts.imageHolders?.note(req.body.image, new URL(input.source).searchParams.get('via') as string)
    void reply.header('location', `/v1/transfers/${record.id}`)
    return reply.code(201).send(record)
  })
}
