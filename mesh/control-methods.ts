import Type from 'typebox'
import type { Static, TSchema } from 'typebox'
import { ErrorInfo, Globs, Job, Manifest, Offset, Sha256, TreeFileState, Url } from './messages.ts'

/**
 * The methods of /staccato/control/1, one map per direction. Each method is
 * a `call` (answered; its reply has a schema too) or a `cast` (not answered).
 * A side answers exactly the map of the direction it receives, with one
 * handler per method (`ControlHandlers`); the channel checks the parameters
 * before the handler runs and the replies before the caller sees them.
 */
export interface CallSpec<P extends TSchema = TSchema, R extends TSchema = TSchema> { kind: 'call', params: P, result: R }
export interface CastSpec<P extends TSchema = TSchema> { kind: 'cast', params: P }
export type Direction = Record<string, CallSpec | CastSpec>

function call<P extends TSchema, R extends TSchema> (params: P, result: R): CallSpec<P, R> {
  return { kind: 'call', params, result }
}

function cast<P extends TSchema> (params: P): CastSpec<P> {
  return { kind: 'cast', params }
}

const SwarmPeerInfo = Type.Object({ name: Type.String({ maxLength: 63 }), peerId: Type.String({ maxLength: 128 }), addrs: Type.Array(Type.String({ maxLength: 512 }), { maxItems: 32 }) })
export type SwarmPeerInfo = Static<typeof SwarmPeerInfo>

const TransferId = Type.String({ maxLength: 64 })
/** A reply that says only "done". */
const Ack = Type.Object({})

/** How an attempt of a transfer went (verifying: the bytes are in, the digests are being compared). */
/**
 * A tree transfer's files: listed (selected), copied, skipped (unchanged, a link, a special file), failed; a mirror's
 * removed extras (`deleted`); a dry run's plan (`wouldCopy`, `wouldDelete`). Optional: agents before them leave them out.
 */
const FileCounts = Type.Object({
  total: Offset,
  done: Offset,
  skipped: Offset,
  failed: Offset,
  deleted: Type.Optional(Offset),
  wouldCopy: Type.Optional(Offset),
  wouldDelete: Type.Optional(Offset)
})
export type FileCounts = Static<typeof FileCounts>

const Report = Type.Object({
  transferId: TransferId,
  attempt: Type.Integer(),
  outcome: Type.Union([Type.Literal('verifying'), Type.Literal('succeeded'), Type.Literal('failed')]),
  bytesDone: Type.Optional(Offset),
  bytesTotal: Type.Optional(Offset),
  sha256: Type.Optional(Sha256),
  /** The digest of a transfer in the blake3 checksum mode (instead of sha256); written like sha256's. */
  blake3: Type.Optional(Sha256),
  error: Type.Optional(ErrorInfo),
  files: Type.Optional(FileCounts)
})

/** Journaled outcomes sent inside one registration; any beyond are reported one by one after it. */
export const MAX_REGISTER_OUTCOMES = 256

const Register = Type.Object({
  name: Type.String({ maxLength: 63 }),
  version: Type.String({ maxLength: 64 }),
  volumes: Type.Array(Type.Object({ name: Type.String({ maxLength: 128 }), readOnly: Type.Boolean() }), { maxItems: 1024 }),
  plugins: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 256 }),
  addrs: Type.Array(Type.String({ maxLength: 512 }), { maxItems: 32 }),
  joinToken: Type.Optional(Type.String({ maxLength: 512 })),
  /** Labels the coordinator selects this agent by (`staccato agent --label`). */
  labels: Type.Optional(Type.Record(Type.String({ maxLength: 63 }), Type.String({ maxLength: 256 }), { maxProperties: 64 })),
  /** Transfers and distributions this agent is part of: still running, or with an outcome still to deliver. */
  active: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 100000 }),
  /**
   * What the agent holds, settled by the coordinator before it schedules
   * anything for this agent: the attempts it still runs (they stay active)…
   */
  running: Type.Optional(Type.Array(Type.Object({ transferId: TransferId, attempt: Type.Integer({ minimum: 1 }) }), { maxItems: 100000 })),
  /** …and the outcomes in its journal the coordinator has not acknowledged (the reply names those it took). */
  outcomes: Type.Optional(Type.Array(Report, { maxItems: MAX_REGISTER_OUTCOMES }))
})

/** Agent → coordinator (the agent dials, registers first, then reports). */
export const AgentToCoordinator = {
  register: call(Register, Type.Object({
    heartbeatMs: Type.Optional(Type.Integer({ minimum: 1 })),
    /** The journaled outcomes the coordinator took: the agent may forget them. */
    settled: Type.Optional(Type.Array(TransferId, { maxItems: MAX_REGISTER_OUTCOMES }))
  })),
  report: call(Report, Ack),
  /**
   * A tree transfer's files as they end, in batches: for `GET /v1/transfers/:id/files`. Answered, so
   * that a tree of many files waits for the coordinator rather than flood it.
   */
  treeFiles: call(Type.Object({
    transferId: TransferId,
    attempt: Type.Integer({ minimum: 1 }),
    files: Type.Array(Type.Object({
      path: Type.String({ minLength: 1, maxLength: 4096 }),
      state: TreeFileState,
      size: Offset,
      reason: Type.Optional(Type.String({ maxLength: 256 })),
      error: Type.Optional(ErrorInfo)
    }, { additionalProperties: false }), { minItems: 1, maxItems: 256 })
  }), Ack),
  swarmReport: call(Type.Object({
    distributionId: Type.String({ maxLength: 64 }),
    /** Absent in the seed's report that it can no longer read the source (changed, gone): the distribution fails. */
    destination: Type.Optional(Url),
    outcome: Type.Union([Type.Literal('succeeded'), Type.Literal('failed')]),
    sha256: Type.Optional(Sha256),
    error: Type.Optional(ErrorInfo)
  }), Ack),
  heartbeat: cast(Type.Object({
    active: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 100000 }),
    /** Free bytes in each volume (for an operator's glance; absent from older agents). */
    volumes: Type.Optional(Type.Array(Type.Object({ name: Type.String({ maxLength: 128 }), free: Type.Number({ minimum: 0 }) }), { maxItems: 1024 }))
  })),
  progress: cast(Type.Object({ transferId: Type.String({ maxLength: 64 }), attempt: Type.Integer(), bytesDone: Offset, bytesTotal: Type.Optional(Offset), files: Type.Optional(FileCounts) })),
  /**
   * The agent's registry mirror lacks blobs of this image (oci://…@sha256:<manifest>): the coordinator
   * brings it into one distribution with the other agents that asked within a short window, seeded by an
   * agent that holds the image or reads the registry once. `self` means: no distribution, read the registry.
   */
  imageWant: call(Type.Object({ image: Url }), Type.Object({ distributionId: Type.Optional(Type.String({ maxLength: 64 })), self: Type.Optional(Type.Boolean()) })),
  swarmProgress: cast(Type.Object({
    distributionId: Type.String({ maxLength: 64 }),
    destination: Url,
    bytesDone: Offset,
    /** A tree distribution: files verified and renamed into place at this destination so far. */
    filesDone: Type.Optional(Offset)
  })),
  /**
   * Participant → coordinator, about once a second while something changed: which pieces it holds (a
   * destination) and the bytes it served to each peer so far in this session; for the dashboard's swarm view.
   */
  swarmStats: cast(Type.Object({
    distributionId: Type.String({ maxLength: 64 }),
    /** Base64 bitfield; at most 8192 pieces (the manifest's bound) is 1024 bytes. */
    have: Type.Optional(Type.String({ maxLength: 1368 })),
    served: Type.Array(Type.Object({ peerId: Type.String({ maxLength: 128 }), bytes: Offset }), { maxItems: 64 })
  }))
} satisfies Direction
export type AgentToCoordinator = typeof AgentToCoordinator

/** Coordinator → agent, over the stream the agent opened. */
export const CoordinatorToAgent = {
  execute: call(Job, Type.Object({ accepted: Type.Boolean() })),
  /** Compute (or look up) the manifest of a source, on the seed. */
  swarmManifest: call(Type.Object({
    distributionId: Type.String({ maxLength: 64 }),
    source: Url,
    pieceSize: Type.Integer({ minimum: 65536 }),
    /** An oci:// image into OCI layouts: the manifest covers its blobs laid end to end (agent/swarm/image.ts). */
    image: Type.Optional(Type.Boolean()),
    /** A directory source (it ends in /): the manifest covers its files laid end to end, selected by these globs. */
    tree: Type.Optional(Type.Object({ include: Type.Optional(Globs), exclude: Type.Optional(Globs) }))
  }), Manifest),
  /** Join a distribution as the seed or as a destination. */
  swarmJoin: call(Type.Object({
    distributionId: Type.String({ maxLength: 64 }),
    role: Type.Union([Type.Literal('seed'), Type.Literal('destination')]),
    source: Url,
    destination: Type.Optional(Url),
    manifest: Manifest,
    /** A bounded random subset of the other participants. */
    peers: Type.Array(SwarmPeerInfo, { maxItems: 64 }),
    /** The coordinator's ticket for this participant to read pieces from the others. */
    ticket: Type.String({ maxLength: 16384 })
  }), Type.Object({ joined: Type.Boolean() })),
  cancel: cast(Type.Object({ transferId: Type.String({ maxLength: 64 }) })),
  /** The distribution ended for this participant: stop serving, and remove the partial if asked. */
  swarmLeave: cast(Type.Object({ distributionId: Type.String({ maxLength: 64 }), removePartial: Type.Boolean() }))
} satisfies Direction
export type CoordinatorToAgent = typeof CoordinatorToAgent

export type Params<D extends Direction, M extends keyof D> = Static<D[M]['params']>
export type Result<D extends Direction, M extends keyof D> = D[M] extends CallSpec<TSchema, infer R> ? Static<R> : void
export type CallMethod<D extends Direction> = { [M in keyof D]: D[M] extends { kind: 'call' } ? M : never }[keyof D] & string
export type CastMethod<D extends Direction> = { [M in keyof D]: D[M] extends { kind: 'cast' } ? M : never }[keyof D] & string

/** One handler per method a side receives; a cast's handler resolves with nothing. */
export type ControlHandlers<D extends Direction, Ctx> = { [M in keyof D]: (params: Params<D, M>, ctx: Ctx) => Promise<Result<D, M>> }

/** Any method, either direction (for code that names one message's type, e.g. `ControlParams<'swarmJoin'>`). */
export type ControlMethod = keyof AgentToCoordinator | keyof CoordinatorToAgent
export type ControlParams<M extends ControlMethod> =
  M extends keyof AgentToCoordinator ? Params<AgentToCoordinator, M> : M extends keyof CoordinatorToAgent ? Params<CoordinatorToAgent, M> : never
