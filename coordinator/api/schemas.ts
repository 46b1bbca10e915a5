import { Type } from 'typebox'
import { TreeFileState } from '../../mesh/index.ts'
import { TRANSFER_ID_PATTERN } from '../ids.ts'
import { LIMITS, MAX_DESTINATIONS } from '../store-input.ts'
import { MAX_STREAMS } from '../../mesh/index.ts'

/** Mirrors isValidAgentName in mesh/location.ts. */
const AGENT_NAME_PATTERN = '^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$'
const LABEL_KEY = LIMITS.labelKeyPattern.slice(1, -1)

export const ErrorBody = Type.Object({
  code: Type.String(),
  message: Type.String()
})

/** Responses for every error a route may give; Fastify picks them by status. */
export const errorResponses = { '4xx': ErrorBody, '5xx': ErrorBody }

export const TransferStateSchema = Type.Union([
  Type.Literal('queued'), Type.Literal('scheduled'), Type.Literal('active'), Type.Literal('verifying'),
  Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('canceled')
])

const Checksum = Type.Object({
  algorithm: Type.Literal('sha256'),
  value: Type.String({ pattern: '^[0-9a-fA-F]{64}$', description: 'hex sha256 of the whole object' })
}, { additionalProperties: false })

const Labels = Type.Record(
  Type.String({ pattern: LIMITS.labelKeyPattern }),
  Type.String({ maxLength: LIMITS.labelValueLength }),
  { additionalProperties: false, maxProperties: LIMITS.labels }
)

export const TransferInputSchema = Type.Object({
  source: Type.String({ minLength: 1, maxLength: LIMITS.locationLength, description: 'a location URL, e.g. agent://store-1/images/a.qcow2' }),
  destination: Type.Optional(Type.String({ minLength: 1, maxLength: LIMITS.locationLength, description: 'one destination; or use destinations' })),
  destinations: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: LIMITS.locationLength }), {
    minItems: 1,
    maxItems: MAX_DESTINATIONS,
    description: 'several agent:// destinations: a distribution, in which every destination also serves the pieces it has'
  })),
  checksum: Type.Optional(Checksum),
  checksumMode: Type.Optional(Type.Union([Type.Literal('sha256'), Type.Literal('blake3'), Type.Literal('none')], {
    description: 'the end-to-end checksum both agents compute: sha256 (the default; a pinned checksum needs it), blake3 (cheaper per byte, for bulk data) or none (no verification); a distribution is always sha256'
  })),
  overwrite: Type.Optional(Type.Union([Type.Literal('always'), Type.Literal('never'), Type.Literal('if-different')], {
    description: 'when the destination exists: always replace it (the default, as cp), never (fails with exists before a byte moves), or if-different (left as it is when its size and mtime are the source\'s)'
  })),
  streams: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: MAX_STREAMS,
    description: `data streams a large file's byte ranges are pulled on at once (1 to ${MAX_STREAMS}; the executing agent's --streams when absent); files under 64 MiB always use one`
  })),
  sync: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('exists'), Type.Literal('size'), Type.Literal('mtime'), Type.Literal('checksum')], {
    description: 'a tree (a source ending in /): which files to copy when the destination has one of that name: none (all), exists (skip it), size (skip the same size), mtime (skip the same size and mtime; the default), checksum (skip the same sha256)'
  })),
  include: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 64, description: 'a tree: copy only files matching one of these globs (a pattern without / matches a name at any depth)' })),
  exclude: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 64, description: 'a tree: leave out files and directories matching one of these globs' })),
  deleteExtra: Type.Optional(Type.Boolean({ description: 'a tree: a mirror; once every file is in place, remove what the destination directory holds and the source does not (excluded paths are left alone; symbolic links are removed, never followed)' })),
  dryRun: Type.Optional(Type.Boolean({ description: 'a tree: list what would be copied (would-copy) and deleted (would-delete) in its files, and change nothing' })),
  links: Type.Optional(Type.Union([Type.Literal('skip'), Type.Literal('copy')], { description: 'a tree: symbolic links are never followed; skip (the default) lists each as skipped, copy makes a link at the destination when its target is relative and stays inside the tree (others are skipped with the reason)' })),
  priority: Type.Optional(Type.Integer({ minimum: LIMITS.priority.min, maximum: LIMITS.priority.max, description: 'higher runs first; default 0' })),
  retries: Type.Optional(Type.Integer({ minimum: LIMITS.retries.min, maximum: LIMITS.retries.max, description: `default ${LIMITS.retries.default}` })),
  labels: Type.Optional(Labels),
  callbackUrl: Type.Optional(Type.String({ minLength: 1, maxLength: LIMITS.callbackUrlLength, description: 'every event of this transfer is POSTed here, signed with the tenant\'s callback secret (GET /v1/webhooks/callback-secret)' }))
}, { additionalProperties: false })

export const CreateHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: LIMITS.idempotencyKeyLength }))
})

const Progress = Type.Object({
  bytesDone: Type.Integer(),
  bytesTotal: Type.Optional(Type.Integer()),
  rate: Type.Number({ description: 'bytes per second, smoothed' }),
  eta: Type.Optional(Type.Number({ description: 'seconds to completion at the current rate' })),
  files: Type.Optional(Type.Object({
    total: Type.Integer({ description: 'files listed (selected by include and exclude)' }),
    done: Type.Integer({ description: 'copied and verified' }),
    skipped: Type.Integer({ description: 'unchanged by the sync level, or not copied (a symbolic link, a special file)' }),
    failed: Type.Integer(),
    deleted: Type.Optional(Type.Integer({ description: 'a mirror (deleteExtra): destination entries the source does not have, removed' })),
    wouldCopy: Type.Optional(Type.Integer({ description: 'a dry run: files that would be copied' })),
    wouldDelete: Type.Optional(Type.Integer({ description: 'a dry run of a mirror: destination entries that would be removed' }))
  }, { description: 'a tree transfer\'s files' })),
  updatedAt: Type.String()
})

const TransferErrorSchema = Type.Object({
  code: Type.String(),
  message: Type.String(),
  retryable: Type.Boolean(),
  at: Type.String(),
  attempt: Type.Integer()
})

const DestinationStatusSchema = Type.Object({
  destination: Type.String(),
  agent: Type.String(),
  state: Type.Union([Type.Literal('queued'), Type.Literal('active'), Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('canceled')]),
  bytesDone: Type.Integer(),
  sha256: Type.Optional(Type.String()),
  lastError: Type.Optional(Type.Object({ code: Type.String(), message: Type.String(), retryable: Type.Boolean(), at: Type.String() })),
  files: Type.Optional(Type.Object({
    total: Type.Integer({ description: 'the tree\'s files and skipped entries' }),
    done: Type.Integer({ description: 'verified and renamed into place at this destination' }),
    skipped: Type.Integer({ description: 'not distributed (a symbolic link, a special file)' }),
    failed: Type.Integer({ description: 'not placed when this destination failed' })
  }, { description: 'a tree distribution (a source ending in /): this destination\'s files' })),
  updatedAt: Type.String()
})

/** The manifest without its piece list, which is for agents, not clients (the serializer drops it). */
const ManifestSummary = Type.Object({
  size: Type.Integer(),
  mtime: Type.Number(),
  pieceSize: Type.Integer(),
  sha256: Type.String(),
  image: Type.Optional(Type.Object({
    digest: Type.String({ description: 'the image manifest\'s digest' }),
    tag: Type.Optional(Type.String()),
    registryBytes: Type.Optional(Type.Integer({ description: 'bytes the seed read from the registry: the registry egress of the whole distribution' })),
    blobs: Type.Array(Type.Object({ digest: Type.String(), size: Type.Integer() }), { description: 'config and layers, in the order the pieces cut them' })
  }, { description: 'an image distribution (oci:// into OCI layouts)' }))
})

export const TransferSchema = Type.Object({
  id: Type.String(),
  tenant: Type.String(),
  state: TransferStateSchema,
  source: Type.String(),
  destination: Type.String({ description: 'for a distribution, the first of its destinations' }),
  destinations: Type.Optional(Type.Array(DestinationStatusSchema, { description: 'a distribution: each destination\'s state' })),
  manifest: Type.Optional(ManifestSummary),
  checksum: Type.Optional(Type.Object({ algorithm: Type.Literal('sha256'), value: Type.String() })),
  checksumMode: Type.Optional(Type.Union([Type.Literal('sha256'), Type.Literal('blake3'), Type.Literal('none')], { description: 'sha256 when absent' })),
  overwrite: Type.Optional(Type.Union([Type.Literal('always'), Type.Literal('never'), Type.Literal('if-different')], { description: 'always when absent' })),
  streams: Type.Optional(Type.Integer({ description: 'data streams asked for (the executing agent\'s default when absent)' })),
  tree: Type.Optional(Type.Object({
    sync: Type.Optional(Type.String()),
    include: Type.Optional(Type.Array(Type.String())),
    exclude: Type.Optional(Type.Array(Type.String())),
    deleteExtra: Type.Optional(Type.Boolean()),
    dryRun: Type.Optional(Type.Boolean()),
    links: Type.Optional(Type.String())
  }, { description: 'a tree transfer\'s sync level and globs (mtime when absent), mirror, dry run and links' })),
  priority: Type.Integer(),
  retries: Type.Integer(),
  labels: Type.Record(Type.String(), Type.String()),
  agents: Type.Array(Type.String()),
  executor: Type.Optional(Type.String()),
  attempt: Type.Integer(),
  notBefore: Type.Optional(Type.Number({ description: 'epoch ms before which a queued transfer waits' })),
  waiting: Type.Optional(Type.Object({
    reason: Type.Literal('agent_offline'),
    agent: Type.String(),
    since: Type.String({ description: 'when the agent was last seen' })
  }, { description: 'why a queued transfer cannot start yet' })),
  progress: Progress,
  lastError: Type.Optional(TransferErrorSchema),
  sha256: Type.Optional(Type.String({ description: 'hex sha256 of the delivered object (checksum mode sha256)' })),
  blake3: Type.Optional(Type.String({ description: 'hex blake3 of the delivered object (checksum mode blake3)' })),
  callbackUrl: Type.Optional(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  startedAt: Type.Optional(Type.String()),
  finishedAt: Type.Optional(Type.String())
})

export const TransferPage = Type.Object({
  items: Type.Array(TransferSchema),
  next: Type.Optional(Type.String({ description: 'pass as `after` for the next page' }))
})

export const TransferIdParams = Type.Object({
  id: Type.String({ pattern: TRANSFER_ID_PATTERN })
}, { additionalProperties: false })

export const TreeFilesQuery = Type.Object({
  state: Type.Optional(TreeFileState),
  after: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'the `next` of the previous page' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 }))
}, { additionalProperties: false })

export const TreeFilePageSchema = Type.Object({
  items: Type.Array(Type.Object({
    path: Type.String({ description: 'inside the tree, /-separated' }),
    state: TreeFileState,
    size: Type.Integer(),
    reason: Type.Optional(Type.String({ description: 'why a skipped file was not copied' })),
    error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String(), retryable: Type.Boolean() }))
  })),
  next: Type.Optional(Type.String())
})

export const ListTransfersQuery = Type.Object({
  state: Type.Optional(TransferStateSchema),
  agent: Type.Optional(Type.String({ pattern: AGENT_NAME_PATTERN })),
  label: Type.Optional(Type.String({ pattern: `^${LABEL_KEY}:.{0,${LIMITS.labelValueLength}}$`, description: 'key:value' })),
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'text in the id, source, destinations, label values or last error (case-insensitive)' })),
  after: Type.Optional(Type.String({ pattern: TRANSFER_ID_PATTERN, description: 'the `next` of the previous page' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')], { description: '`asc` (default): oldest first; `desc`: newest first' }))
}, { additionalProperties: false })

export const AgentSchema = Type.Object({
  name: Type.String(),
  peerId: Type.String(),
  addrs: Type.Array(Type.String()),
  volumes: Type.Array(Type.Object({ name: Type.String(), readOnly: Type.Boolean(), free: Type.Optional(Type.Number({ description: 'free bytes, from the latest heartbeat (online agents)' })) })),
  plugins: Type.Array(Type.String()),
  labels: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'what the agent is labelled (staccato agent --label)' })),
  version: Type.String(),
  online: Type.Boolean(),
  enrolledAt: Type.String(),
  lastSeenAt: Type.String({ description: 'the latest heartbeat while online; when it went offline otherwise' }),
  rate: Type.Optional(Type.Object({
    rxBytesPerSecond: Type.Number(),
    txBytesPerSecond: Type.Number()
  }, { description: 'bytes per second received and sent over the last 30 s, from what the agents report (kept in memory); online agents only' }))
})

export const AgentList = Type.Object({ items: Type.Array(AgentSchema) })

export const AgentNameParams = Type.Object({
  name: Type.String({ pattern: AGENT_NAME_PATTERN })
}, { additionalProperties: false })

export const Health = Type.Object({ ok: Type.Boolean() })
