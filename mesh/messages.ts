import Type from 'typebox'
import type { Static, TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import { ProtocolError } from './errors.ts'

/**
 * Every message on the wire has a schema and a version. A message that does
 * not match is a ProtocolError: it closes the stream it came on, never the process.
 */
export const WIRE_VERSION = 1

export const ErrorInfo = Type.Object({ code: Type.String({ maxLength: 64 }), message: Type.String({ maxLength: 4096 }), retryable: Type.Boolean() })
export const Offset = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
export const Url = Type.String({ minLength: 1, maxLength: 4096 })
export const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' })
const ObjectVersion = Type.Object({ size: Offset, mtime: Type.Number(), etag: Type.Optional(Type.String({ maxLength: 512 })) })
/** blake3 digests are 256 bits, written like sha256's. */
const Blake3 = Sha256

/**
 * The end-to-end checksum of a transfer: sha256 (the default, and what a
 * pinned digest needs), blake3 (cheaper per byte, for bulk data) or none.
 * Swarm pieces are always sha256, whatever this says.
 */
export const ChecksumMode = Type.Union([Type.Literal('sha256'), Type.Literal('blake3'), Type.Literal('none')])
export type ChecksumMode = Static<typeof ChecksumMode>
export const CHECKSUM_MODES: readonly ChecksumMode[] = ['sha256', 'blake3', 'none']

/**
 * What a transfer does when its destination exists: `always` replaces it (as
 * `cp` and `scp` do, the default), `never` fails with `exists` before a byte
 * moves, `if-different` leaves it when its size and mtime are the source's.
 */
export const Overwrite = Type.Union([Type.Literal('always'), Type.Literal('never'), Type.Literal('if-different')])
export type Overwrite = Static<typeof Overwrite>
export const OVERWRITE_MODES: readonly Overwrite[] = ['always', 'never', 'if-different']

/**
 * Data streams one transfer may use at once (byte ranges pulled in parallel).
 * 16, as FTS caps `nostreams`: beyond that the streams only contend for the
 * same cores, disks and congestion window.
 */
export const MAX_STREAMS = 16
export const Streams = Type.Integer({ minimum: 1, maximum: MAX_STREAMS })

/** Globus's sync levels: which files of a tree are copied when the destination has one of that name. */
export const SyncMode = Type.Union([Type.Literal('none'), Type.Literal('exists'), Type.Literal('size'), Type.Literal('mtime'), Type.Literal('checksum')])
export type SyncMode = Static<typeof SyncMode>
export const SYNC_MODES: readonly SyncMode[] = ['none', 'exists', 'size', 'mtime', 'checksum']

// ---- /staccato/data/1 -------------------------------------------------------

/** A raw X25519 public key, base64url (32 bytes). */
const X25519Pub = Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' })
/** The reader's offer of a direct data socket (docs/security.md, "Mesh: the direct data socket"). */
const DirectOffer = Type.Object({ pub: X25519Pub }, { additionalProperties: false })
/** The server's answer: where to connect, its key share, and the session to present (16 bytes, base64url). */
const DirectAnswer = Type.Object({
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  host: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  pub: X25519Pub,
  session: Type.String({ pattern: '^[A-Za-z0-9_-]{22}$' })
}, { additionalProperties: false })

export const DataRequest = Type.Object({
  v: Type.Literal(WIRE_VERSION),
  ticket: Type.String({ maxLength: 16384 }),
  source: Url,
  offset: Offset,
  length: Type.Optional(Offset),
  expect: Type.Optional(ObjectVersion),
  /** Ask the source to hash the whole object and send the digest in the trailer. */
  digest: Type.Boolean(),
  /** The algorithm of that digest; sha256 when absent (what agents before checksum modes send). */
  algorithm: Type.Optional(Type.Union([Type.Literal('sha256'), Type.Literal('blake3')])),
  /** Offered by a reader that can take the bytes on a direct socket; a server without a data port ignores it. */
  direct: Type.Optional(DirectOffer)
}, { additionalProperties: false })
export type DataRequest = Static<typeof DataRequest>

export const DataResponse = Type.Union([
  Type.Object({ v: Type.Literal(WIRE_VERSION), ok: Type.Literal(true), size: Offset, mtime: Type.Number(), etag: Type.Optional(Type.String()), length: Offset, direct: Type.Optional(DirectAnswer) }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), ok: Type.Literal(false), error: ErrorInfo })
])
export type DataResponse = Static<typeof DataResponse>

/**
 * After a response with `direct`, a reader that cannot reach the data port says
 * so on the stream, and the bytes and trailer follow on the stream as without it.
 */
export const DirectFallback = Type.Object({ v: Type.Literal(WIRE_VERSION), direct: Type.Literal(false), reason: Type.String({ maxLength: 1024 }) }, { additionalProperties: false })
export type DirectFallback = Static<typeof DirectFallback>

export const DataTrailer = Type.Union([
  Type.Object({ v: Type.Literal(WIRE_VERSION), ok: Type.Literal(true), sha256: Type.Optional(Sha256), blake3: Type.Optional(Blake3) }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), ok: Type.Literal(false), error: ErrorInfo })
])
export type DataTrailer = Static<typeof DataTrailer>

// ---- /staccato/tree/1 ------------------------------------------------------

/** Entries per `entries` message, and files per `read` request of a holder before TREE_READ_FILES: bounded frames, and bounded memory on both ends. */
export const TREE_BATCH = 256

/**
 * Files per `read` request a holder takes. Each request costs both agents a
 * stream, a data connection and its keys, whatever it holds: at 256 small
 * files a request, 10,000 × 4 KiB cost ~0.8 CPU-s more than at 1,024
 * (bench:tree, docs/benchmarks.md "#15 small files, tenth session"). A
 * reader keeps the request under the frame limit by its bytes too
 * (agent/tree/policy.ts `READ_REQUEST_BYTES`), and asks a holder from
 * before this in requests of TREE_BATCH.
 */
export const TREE_READ_FILES = 1024

/**
 * Bytes of one `files` message's contents at most: the reader holds a pack
 * whole until its files are checked and written, so this bounds its memory
 * (a group of small files is 8 MiB at most, agent/tree/policy.ts).
 */
export const TREE_PACK_BYTES = 8 * 1024 * 1024

const TreePath = Type.String({ minLength: 1, maxLength: 4096 })
export const Globs = Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 64 })

export const TreeEntry = Type.Object({
  path: TreePath,
  /** `link`: a symbolic link to copy as a link (asked with `links: 'copy'`, its target inside the tree). */
  type: Type.Union([Type.Literal('file'), Type.Literal('directory'), Type.Literal('skipped'), Type.Literal('link')]),
  size: Offset,
  mtime: Type.Number(),
  mode: Type.Integer({ minimum: 0, maximum: 0o7777 }),
  reason: Type.Optional(Type.String({ maxLength: 256 })),
  /** A link's target, as readlink gives it (PATH_MAX). */
  target: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 }))
}, { additionalProperties: false })
export type TreeEntry = Static<typeof TreeEntry>

/**
 * One request per stream, reader → holder, with the ticket for the tree (its
 * `src` is the directory location). `list` streams the tree's entries in
 * `entries` messages, then `end`. `read` streams each asked file in turn
 * (`file` header, `length` raw bytes, `file-end` with the digest of the
 * whole file when asked, or `file-error` for that file alone), then `end`:
 * many files over one stream, one round trip per batch, not per file. Asked
 * `packed`, small whole files come many to a `files` message instead.
 */
export const TreeRequest = Type.Union([
  Type.Object({
    v: Type.Literal(WIRE_VERSION),
    op: Type.Literal('list'),
    ticket: Type.String({ maxLength: 16384 }),
    source: Url,
    include: Type.Optional(Globs),
    exclude: Type.Optional(Globs),
    /** Symbolic links whose target stays inside the tree listed as `link` entries (a holder from before refuses the field). */
    links: Type.Optional(Type.Literal('copy'))
  }, { additionalProperties: false }),
  Type.Object({
    v: Type.Literal(WIRE_VERSION),
    op: Type.Literal('read'),
    ticket: Type.String({ maxLength: 16384 }),
    source: Url,
    files: Type.Array(Type.Object({ path: TreePath, offset: Offset, expect: ObjectVersion }, { additionalProperties: false }), { minItems: 1, maxItems: TREE_READ_FILES }),
    algorithm: Type.Optional(Type.Union([Type.Literal('sha256'), Type.Literal('blake3')])),
    /** Offered for a batch of large files: the batch's messages then go on the holder's direct data socket (`direct`, below). */
    direct: Type.Optional(DirectOffer),
    /** The reader takes `files` messages: small whole files packed many to a message (one header, one run of bytes). */
    packed: Type.Optional(Type.Boolean())
  }, { additionalProperties: false })
])
export type TreeRequest = Static<typeof TreeRequest>

export const TreeMessage = Type.Union([
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('entries'), entries: Type.Array(TreeEntry, { maxItems: TREE_BATCH }) }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('file'), path: TreePath, size: Offset, mtime: Type.Number(), length: Offset }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('file-end'), path: TreePath, sha256: Type.Optional(Sha256), blake3: Type.Optional(Blake3) }),
  // Asked with `packed`: whole files from offset 0, each with its digest, then `length` raw bytes, their contents one
  // after the other in this order (each `size` bytes): per-file messages cost more than a small file's bytes.
  Type.Object({
    v: Type.Literal(WIRE_VERSION),
    t: Type.Literal('files'),
    files: Type.Array(Type.Object({ path: TreePath, size: Offset, mtime: Type.Number(), sha256: Type.Optional(Sha256), blake3: Type.Optional(Blake3) }), { minItems: 1, maxItems: TREE_BATCH }),
    length: Type.Integer({ minimum: 0, maximum: TREE_PACK_BYTES })
  }),
  // `now`: the file as it is now, when it changed since it was listed (or while it was read: then in place of `file-end`,
  // its `length` bytes sent), so that the reader can ask for it again.
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('file-error'), path: TreePath, error: ErrorInfo, now: Type.Optional(ObjectVersion) }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('end') }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('error'), error: ErrorInfo }),
  // The holder's answer to a `direct` offer, as the first message: the rest of the batch comes as records on that socket,
  // unless the reader sends a DirectFallback on the stream, where it then comes instead.
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('direct'), direct: DirectAnswer })
])
export type TreeMessage = Static<typeof TreeMessage>

/** What a tree transfer selects and how it compares: on the job, from the record. */
export const TreeOptions = Type.Object({
  sync: Type.Optional(SyncMode),
  include: Type.Optional(Globs),
  exclude: Type.Optional(Globs),
  /** A mirror: once every file is in place, what the destination holds and the source does not is removed (selected paths only). */
  deleteExtra: Type.Optional(Type.Boolean()),
  /** List what would be copied (and deleted), change nothing. */
  dryRun: Type.Optional(Type.Boolean()),
  /** Symbolic links whose target stays inside the tree are copied as links (otherwise every link is skipped). */
  links: Type.Optional(Type.Literal('copy'))
}, { additionalProperties: false })
export type TreeOptions = Static<typeof TreeOptions>

/**
 * One file of a tree as it ended: copied, skipped (unchanged, a link, a
 * special file), failed, deleted (a mirror's extra), or, in a dry run, what
 * would be copied or deleted.
 */
export const TreeFileState = Type.Union([
  Type.Literal('done'), Type.Literal('skipped'), Type.Literal('failed'), Type.Literal('deleted'), Type.Literal('would-copy'), Type.Literal('would-delete')
])
export type TreeFileState = Static<typeof TreeFileState>
export const TREE_FILE_STATES: readonly TreeFileState[] = ['done', 'skipped', 'failed', 'deleted', 'would-copy', 'would-delete']

// ---- /staccato/control/1 ----------------------------------------------------

export const ControlEnvelope = Type.Union([
  Type.Object({ v: Type.Literal(WIRE_VERSION), kind: Type.Literal('call'), id: Type.Integer({ minimum: 1 }), method: Type.String({ maxLength: 64 }), params: Type.Unknown() }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), kind: Type.Literal('cast'), method: Type.String({ maxLength: 64 }), params: Type.Unknown() }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), kind: Type.Literal('reply'), id: Type.Integer({ minimum: 1 }), result: Type.Optional(Type.Unknown()), error: Type.Optional(ErrorInfo) })
])
export type ControlEnvelope = Static<typeof ControlEnvelope>

export const Job = Type.Object({
  transferId: Type.String({ maxLength: 64 }),
  attempt: Type.Integer({ minimum: 1 }),
  source: Url,
  destination: Url,
  checksum: Type.Optional(Type.Object({ algorithm: Type.Literal('sha256'), value: Sha256 })),
  /** sha256 when absent. */
  checksumMode: Type.Optional(ChecksumMode),
  /** always when absent. */
  overwrite: Type.Optional(Overwrite),
  /** Data streams to pull byte ranges on at once; the executing agent's default when absent. */
  streams: Type.Optional(Streams),
  /** A tree transfer's selection and sync level (the source names a directory). */
  tree: Type.Optional(TreeOptions),
  /** Ticket for reading the source from another agent, with that agent's address. */
  ticket: Type.Optional(Type.String({ maxLength: 16384 })),
  sourcePeer: Type.Optional(Type.Object({ peerId: Type.String({ maxLength: 128 }), addrs: Type.Array(Type.String({ maxLength: 512 }), { maxItems: 32 }) }))
}, { additionalProperties: false })
export type Job = Static<typeof Job>

// ---- /staccato/swarm/1 ------------------------------------------------------

const Piece = Type.Integer({ minimum: 0, maximum: 1 << 20 })

/** One message on a swarm stream; a `piece` header is followed by `length` raw bytes. */
export const SwarmMessage = Type.Union([
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('hello'), dist: Type.String({ maxLength: 64 }), ticket: Type.String({ maxLength: 16384 }), have: Type.String({ maxLength: 1 << 18 }) }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('have'), piece: Piece }),
  // `sole`: the asker reaches none of the peers the seed named as holders, so only the seed can send it.
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('request'), piece: Piece, sole: Type.Optional(Type.Boolean()) }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('cancel'), piece: Piece }),
  // `holders`: peers the refusing seed knows to have the piece, so the asker can say it reaches none of them.
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('reject'), piece: Piece, reason: Type.String({ maxLength: 256 }), holders: Type.Optional(Type.Array(Type.String({ maxLength: 128 }), { maxItems: 64 })) }),
  Type.Object({ v: Type.Literal(WIRE_VERSION), t: Type.Literal('piece'), piece: Piece, length: Type.Integer({ minimum: 0, maximum: 256 * 1024 * 1024 }) })
])
export type SwarmMessage = Static<typeof SwarmMessage>

const Digest = Type.String({ pattern: '^sha256:[0-9a-f]{64}$' })

/** What an image distribution's destinations need besides the pieces: the blobs, and the manifest to name them. */
export const ImageManifest = Type.Object({
  /** The OCI-form manifest's digest (what the layout's index.json names). */
  digest: Digest,
  mediaType: Type.String({ maxLength: 256 }),
  /**
   * The OCI-form manifest, base64. It rides in the join with up to 8192 piece hashes (540 KB) under the 1 MiB
   * control frame: 256 KiB of base64 leaves room, and an image manifest of a thousand layers is about 200 KB.
   */
  manifest: Type.String({ maxLength: 256 * 1024 }),
  tag: Type.Optional(Type.String({ maxLength: 128 })),
  platform: Type.Optional(Type.Object({ os: Type.String({ maxLength: 64 }), architecture: Type.String({ maxLength: 64 }), variant: Type.Optional(Type.String({ maxLength: 64 })) })),
  /** Config and layers, each once, in the order the pieces cut them. */
  blobs: Type.Array(Type.Object({ digest: Digest, size: Offset }), { maxItems: 1024 }),
  /** Bytes the seed read from the registry to make this manifest: the distribution's registry egress (0 when it held every blob). */
  registryBytes: Type.Optional(Offset)
})
export type ImageManifest = Static<typeof ImageManifest>

/**
 * What a tree distribution's destinations need besides the pieces: its file table. The object the pieces cut is
 * the files laid end to end in this order (each at `offset`), so a piece may span several files, as in a
 * multi-file torrent (agent/swarm/tree-seed.ts, tree-writer.ts). It rides in the join with the piece hashes under the 1 MiB control
 * frame: the seed refuses a table of more than TREE_TABLE_BYTES of JSON (about 2,000 files).
 */
export const TreeManifest = Type.Object({
  files: Type.Array(Type.Object({ path: TreePath, size: Offset, offset: Offset, mode: Type.Integer({ minimum: 0, maximum: 0o7777 }), mtime: Type.Number(), sha256: Sha256 }, { additionalProperties: false }), { maxItems: 8192 }),
  /** Every directory of the tree (empty ones included), parents before children. */
  dirs: Type.Array(Type.Object({ path: TreePath, mode: Type.Integer({ minimum: 0, maximum: 0o7777 }) }, { additionalProperties: false }), { maxItems: 8192 }),
  /** Entries not distributed (symbolic links, special files), with the reason. */
  skipped: Type.Array(Type.Object({ path: TreePath, reason: Type.String({ maxLength: 256 }) }, { additionalProperties: false }), { maxItems: 8192 })
})
export type TreeManifest = Static<typeof TreeManifest>

/** The JSON size of a tree manifest's table at most: with 8192 piece hashes (540 KB) it stays under the 1 MiB frame. */
export const TREE_TABLE_BYTES = 384 * 1024

export const Manifest = Type.Object({
  size: Offset,
  mtime: Type.Number(),
  pieceSize: Type.Integer({ minimum: 1 }),
  sha256: Sha256,
  /** sha256 of every piece, in order. */
  pieces: Type.Array(Sha256, { maxItems: 8192 }),
  /**
   * An image distribution: the object the pieces cut is the image's blobs laid end to end, in this order
   * (agent/swarm/image.ts); each destination writes them into an OCI layout and names `manifest` in its index.
   */
  image: Type.Optional(ImageManifest),
  /** A tree distribution (a directory source): the files the pieces cut, laid end to end (agent/swarm/tree-seed.ts, tree-writer.ts). */
  tree: Type.Optional(TreeManifest)
})
export type Manifest = Static<typeof Manifest>

const compiled = new Map<TSchema, ReturnType<typeof Compile>>()

/** Checks `value` against `schema`, throwing a ProtocolError that names the first bad field. */
export function decode<S extends TSchema> (schema: S, value: unknown, what: string): Static<S> {
  let validator = compiled.get(schema)
  if (validator === undefined) {
    validator = Compile(schema)
    compiled.set(schema, validator)
  }
  if (validator.Check(value)) return value as Static<S>
  const [first] = validator.Errors(value)
  const where = first?.instancePath !== undefined && first.instancePath !== '' ? ` at ${first.instancePath}` : ''
  throw new ProtocolError(`malformed ${what}${where}: ${first?.message ?? 'does not match its schema'}`)
}
