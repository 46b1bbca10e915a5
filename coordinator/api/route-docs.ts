/**
 * Summary, description and tag of every route in the OpenAPI document, kept
 * in one table rather than in each route's schema so that the whole reference
 * reads as one text. The OpenAPI test fails on a route missing here.
 */
export interface RouteDoc { summary: string, description: string, tags: string[] }

const T = { transfers: ['transfers'], agents: ['agents'], events: ['events'], tokens: ['tokens'], webhooks: ['webhooks'], service: ['service'] }

export const ROUTE_DOCS: Record<string, RouteDoc> = {
  'GET /': { summary: 'Where the reference is', description: 'A browser (Accept: text/html) is redirected to the reference at /docs; other clients get the version and where /docs and /openapi.json are. No token needed.', tags: T.service },
  'GET /healthz': { summary: 'Liveness', description: 'Answers 200 while the coordinator serves requests. No token needed.', tags: T.service },
  'GET /metrics': { summary: 'Prometheus metrics', description: 'The coordinator\'s metrics in the Prometheus text format: transfers by state, API requests and latencies, agents online.', tags: T.service },
  'POST /v1/transfers': { summary: 'Submit a transfer', description: 'Records a transfer (one destination) or a distribution (`destinations`) as `queued` and answers 201 with its id once it is on disk. The scheduler starts it; follow it with GET /v1/transfers/{id} or the change feed. Needs an operator token.', tags: T.transfers },
  'POST /v1/images/preheat': { summary: 'Preheat an image', description: 'Distributes every blob of an oci:// image to the agents named, ahead of their first pull: a distribution (seeded by `via`, or the first agent, which reads the registry once per blob) into an OCI layout at `<volume>/preheat/<registry>/<repository>/` on each, so that each agent\'s registry mirror serves the pull locally. Answers 201 with the distribution. Needs an operator token.', tags: T.transfers },
  'GET /v1/transfers': { summary: 'List transfers', description: 'The caller\'s tenant\'s transfers, filtered by state and label, a page at a time (`next` is the cursor of the following page).', tags: T.transfers },
  'GET /v1/transfers/{id}': { summary: 'Show a transfer', description: 'State, progress (bytes, rate, ETA), attempt, last error and, for a distribution, one state per destination.', tags: T.transfers },
  'POST /v1/transfers/{id}/cancel': { summary: 'Cancel a transfer', description: 'Cancels a transfer that has not finished, or one destination of a distribution with `?destination=`. Agents remove their partial files. Needs an operator token.', tags: T.transfers },
  'POST /v1/transfers/{id}/retry': { summary: 'Retry a transfer', description: 'Submits a failed or canceled transfer again as a new transfer with the same input (the finished record keeps its history) and answers 201 with it; asked again, it answers 200 with the same new transfer. Needs an operator token.', tags: T.transfers },
  'GET /v1/transfers/{id}/files': { summary: 'A tree\'s files', description: 'The files of a tree transfer (a source ending in /) as its agent reported them, by path: `done`, `skipped` (with the reason: unchanged by the sync level, a symbolic link, a special file) or `failed` (with its error), filtered by `state`, a page at a time (`next` is the cursor of the following page).', tags: T.transfers },
  'GET /v1/transfers/{id}/swarm': { summary: 'A distribution\'s swarm', description: 'Which pieces each participant holds (a base64 bitfield, first piece in the high bit of the first byte), each one\'s progress, what the seed has uploaded, and how many bytes each participant served to which other one, as last reported by the agents (about once a second). Kept in memory for the most recent distributions only.', tags: T.transfers },
  'GET /v1/throughput': { summary: 'Throughput over time', description: 'Bytes received and sent per 10 s bucket over the last hour, for one agent (`agent=`) or the whole mesh, from what the agents report. Kept in memory: it starts empty when the coordinator restarts.', tags: T.agents },
  'GET /v1/whoami': { summary: 'The caller\'s token', description: 'The role and tenant of the token that calls it, so that a client can show only what it may do.', tags: T.tokens },
  'DELETE /v1/transfers/{id}': { summary: 'Remove a transfer record', description: 'Forgets a finished transfer. Needs an operator token.', tags: T.transfers },
  'GET /v1/agents': { summary: 'List agents', description: 'Every enrolled agent: name, peer id, volumes, plug-ins, whether it is online and when it was last seen.', tags: T.agents },
  'DELETE /v1/agents/{name}': { summary: 'Remove an agent', description: 'Forgets an enrolled agent and closes its connection, so that the host can be decommissioned or its name enrolled again with a new key and a join token. Refused (409) while it takes part in unfinished transfers (queued ones too), unless force=true, which fails them. Stop the agent first: a running one with a valid join token would enroll again. Admin only.', tags: T.agents },
  'GET /v1/agents/{name}': { summary: 'Show an agent', description: 'One enrolled agent, by name.', tags: T.agents },
  'GET /v1/changes': { summary: 'Change feed', description: 'Events after sequence number `after`, oldest first; with `wait` it long-polls until there is one. A client that was down catches up from its last `seq`.', tags: T.events },
  'GET /v1/events': { summary: 'Live event stream', description: 'Server-sent events for the topics asked for (wildcards: `transfer.*.state`, `agent.#`); `Last-Event-ID` resumes after a disconnect.', tags: T.events },
  'POST /v1/tokens': { summary: 'Create an API token', description: 'A token with a role and a tenant, optionally expiring. The secret is in this answer only; the coordinator keeps its hash. Admin only.', tags: T.tokens },
  'GET /v1/tokens': { summary: 'List API tokens', description: 'Every API token without its secret: role, tenant, name, source, expiry, revocation. Admin only.', tags: T.tokens },
  'DELETE /v1/tokens/{id}': { summary: 'Revoke an API token', description: 'Refused from this request on, across restarts too. Admin only.', tags: T.tokens },
  'POST /v1/agent-tokens': { summary: 'Create a join token', description: 'A token that enrolls agents on their first registration; single-use or expiring if asked. The secret is in this answer only. Admin only.', tags: T.tokens },
  'GET /v1/agent-tokens': { summary: 'List join tokens', description: 'Every join token without its secret, with who used a single-use one. Admin only.', tags: T.tokens },
  'DELETE /v1/agent-tokens/{id}': { summary: 'Revoke a join token', description: 'No further agent enrolls with it; agents already enrolled stay. Admin only.', tags: T.tokens },
  'POST /v1/webhooks': { summary: 'Add a webhook', description: 'Delivers the events of the topics asked for to a URL, signed (Standard Webhooks headers), at least once, with retries. Needs an operator token.', tags: T.webhooks },
  'GET /v1/webhooks': { summary: 'List webhooks', description: 'The caller\'s tenant\'s webhooks.', tags: T.webhooks },
  'GET /v1/webhooks/callback-secret': { summary: 'Callback signing secret', description: 'The secret that signs this tenant\'s per-transfer callbacks (callbackUrl); made on first use.', tags: T.webhooks },
  'GET /v1/webhooks/{id}': { summary: 'Show a webhook', description: 'One webhook with its topics and delivery state.', tags: T.webhooks },
  'DELETE /v1/webhooks/{id}': { summary: 'Remove a webhook', description: 'Stops its deliveries. Needs an operator token.', tags: T.webhooks },
  'GET /v1/webhooks/{id}/deliveries': { summary: 'Webhook deliveries', description: 'Recent delivery attempts of one webhook: event, status, answer, next retry.', tags: T.webhooks }
}

/** `/v1/transfers/:id` → `/v1/transfers/{id}`, as the OpenAPI document writes paths. */
export function openApiPath (url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
}
