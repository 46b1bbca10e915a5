import { Type } from 'typebox'
import { InvalidArgumentError, NotFoundError } from '../../mesh/index.ts'
import type { MeshWatch } from '../mesh-watch.ts'
import type { TransferStore } from '../store.ts'
import { seedAgent } from '../distribution.ts'
import { blobProgress } from '../image-progress.ts'
import { canSee } from './auth.ts'
import { TransferIdParams, errorResponses } from './schemas.ts'
import type { ApiInstance } from './types.ts'

const SwarmSchema = Type.Object({
  id: Type.String(),
  state: Type.String(),
  size: Type.Optional(Type.Integer()),
  pieceSize: Type.Optional(Type.Integer()),
  pieces: Type.Integer({ description: '0 until the seed has made the manifest' }),
  seed: Type.Optional(Type.String()),
  participants: Type.Array(Type.Object({
    agent: Type.String(),
    role: Type.Union([Type.Literal('seed'), Type.Literal('destination')]),
    state: Type.String(),
    bytesDone: Type.Integer(),
    have: Type.Optional(Type.String({ description: 'base64 bitfield, piece 0 in the high bit of the first byte' })),
    uploaded: Type.Integer({ description: 'bytes served to the others' }),
    blobs: Type.Optional(Type.Array(Type.Integer(), { description: 'an image distribution: bytes held of each blob, in the order of `blobs`' })),
    updatedAt: Type.Optional(Type.String())
  })),
  blobs: Type.Optional(Type.Array(Type.Object({ digest: Type.String(), size: Type.Integer() }), { description: 'an image distribution: its blobs' })),
  served: Type.Array(Type.Object({ from: Type.String(), to: Type.String(), bytes: Type.Integer() }))
})

const ThroughputQuery = Type.Object({
  agent: Type.Optional(Type.String({ minLength: 1, maxLength: 63 }))
}, { additionalProperties: false })

const ThroughputSchema = Type.Object({
  bucketSeconds: Type.Integer(),
  from: Type.String(),
  to: Type.String(),
  rx: Type.Array(Type.Number()),
  tx: Type.Array(Type.Number())
})

/** The dashboard's live views that the store does not hold: swarms and throughput (MeshWatch). */
export function watchRoutes (app: ApiInstance, opts: { store: TransferStore, watch: MeshWatch }): void {
  const { store, watch } = opts

  app.get('/v1/transfers/:id/swarm', {
    config: { role: 'reader' },
    schema: { params: TransferIdParams, response: { 200: SwarmSchema, ...errorResponses } }
  }, async req => {
    const rec = store.get(req.params.id)
    if (rec === undefined || !canSee(req.principal, rec.tenant)) throw new NotFoundError(`no transfer '${req.params.id}'`)
    if (rec.destinations === undefined) throw new InvalidArgumentError(`${rec.id} is a transfer, not a distribution: it has no swarm`)
    const view = watch.swarms.get(rec.id)
    const seed = seedAgent(rec)
    const served: Array<{ from: string, to: string, bytes: number }> = []
    for (const [from, stats] of view ?? []) for (const [to, bytes] of stats.served) served.push({ from, to, bytes })
    const uploaded = (agent: string): number => [...(view?.get(agent)?.served.values() ?? [])].reduce((a, b) => a + b, 0)
    const at = (agent: string): string | undefined => { const t = view?.get(agent)?.at; return t !== undefined ? new Date(t).toISOString() : undefined }
    const size = rec.manifest?.size
    const participants = [
      ...(seed !== undefined ? [{ agent: seed, role: 'seed' as const, state: rec.state, bytesDone: size ?? 0, uploaded: uploaded(seed), updatedAt: at(seed) }] : []),
      // A destination that succeeded holds every piece, whether or not its last stats came before it left.
      ...rec.destinations.map(d => ({ agent: d.agent, role: 'destination' as const, state: d.state, bytesDone: d.bytesDone, have: d.state === 'succeeded' ? allPieces(rec.manifest?.pieces.length ?? 0) : view?.get(d.agent)?.have, uploaded: uploaded(d.agent), updatedAt: at(d.agent) }))
    ]
    const manifest = rec.manifest
    if (manifest?.image === undefined) return { id: rec.id, state: rec.state, size, pieceSize: manifest?.pieceSize, pieces: manifest?.pieces.length ?? 0, seed, participants, served }
    // Per blob from the pieces each holds: which layers a host already has, while the image is on its way.
    const blobs = manifest.image.blobs.map(b => ({ digest: b.digest, size: b.size }))
    const perBlob = participants.map(p => ({ ...p, blobs: p.role === 'seed' ? blobs.map(b => b.size) : blobProgress(manifest, p.have) }))
    return { id: rec.id, state: rec.state, size, pieceSize: manifest.pieceSize, pieces: manifest.pieces.length, seed, participants: perBlob, served, blobs }
  })

  // Admin, as GET /v1/agents: how busy each agent is says which agents exist, whatever the tenant.
  app.get('/v1/throughput', {
    schema: { querystring: ThroughputQuery, response: { 200: ThroughputSchema, ...errorResponses } }
  }, async req => {
    if (req.query.agent !== undefined && store.getAgent(req.query.agent) === undefined) throw new NotFoundError(`no agent '${req.query.agent}'`)
    return watch.throughput.series(req.query.agent)
  })
}

/** The bitfield with every one of `pieces` set, in the agents' encoding. */
function allPieces (pieces: number): string {
  const bytes = Buffer.alloc(Math.ceil(pieces / 8), 0xff)
  if (pieces % 8 !== 0) bytes[bytes.length - 1] = (0xff << (8 - pieces % 8)) & 0xff
  return bytes.toString('base64')
}
