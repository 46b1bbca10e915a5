import Type from 'typebox'
import type { Static } from 'typebox'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { TicketError } from './errors.ts'
import { decode } from './messages.ts'

/**
 * A ticket is the coordinator's signed permission for one peer to read one
 * source within a byte range until an expiry: `base64url(claims).base64url(sig)`.
 * Agents verify it against the coordinator's public key, which they know from
 * the coordinator's peer id, so no shared secret is ever distributed.
 */
export const TicketClaims = Type.Object({
  v: Type.Literal(1),
  /** Transfer (or distribution) id, for logs and counters. */
  tid: Type.String({ maxLength: 64 }),
  /** The source location exactly as the reader must ask for it. */
  src: Type.String({ maxLength: 4096 }),
  /** Readable byte range [off, end); end absent means to the end of the object. */
  off: Type.Integer({ minimum: 0 }),
  end: Type.Optional(Type.Integer({ minimum: 0 })),
  /** The only peer id allowed to present this ticket. */
  rdr: Type.String({ maxLength: 128 }),
  /** Expiry, epoch seconds. */
  exp: Type.Integer({ minimum: 0 })
}, { additionalProperties: false })
export type TicketClaims = Static<typeof TicketClaims>

const encoder = new TextEncoder()

export async function signTicket (key: PrivateKey, claims: TicketClaims): Promise<string> {
  const body = Buffer.from(JSON.stringify(claims)).toString('base64url')
  const sig = await key.sign(encoder.encode(body))
  return `${body}.${Buffer.from(sig).toString('base64url')}`
}

export interface TicketRequest {
  /** Peer id of the connection that presented the ticket (authenticated by noise). */
  reader: string
  source: string
  offset: number
  /** Bytes asked for; to the end of the object when absent. */
  length?: number
  /** Epoch seconds; defaults to now. */
  now?: number
}

export function issuerKey (coordinatorPeerId: string): PublicKey {
  const key = peerIdFromString(coordinatorPeerId).publicKey
  if (key === undefined) throw new TicketError(`peer id ${coordinatorPeerId} does not embed a public key`)
  return key
}

/** Verifies a ticket for one request, throwing TicketError with the reason when it does not allow it. */
/** Who may sign tickets: one coordinator's key, or any of several (replicas, each with its own identity). */
export type TicketIssuer = Pick<PublicKey, 'verify'>

/** An issuer that accepts a signature by any of these keys. */
export function anyIssuer (keys: TicketIssuer[]): TicketIssuer {
  if (keys.length === 1) return keys[0]
  return {
    verify: async (data, sig) => {
      for (const key of keys) {
        try {
          if (await key.verify(data, sig)) return true
        } catch {
          // A key of another type refuses this signature's shape: the next one may take it.
        }
      }
      return false
    }
  }
}

export async function verifyTicket (ticket: string, issuer: TicketIssuer, req: TicketRequest): Promise<TicketClaims> {
  const dot = ticket.indexOf('.')
  if (dot <= 0) throw new TicketError('ticket is not of the form claims.signature')
  const body = ticket.slice(0, dot)
  const sig = Buffer.from(ticket.slice(dot + 1), 'base64url')
  // A signature of the wrong length makes verify() throw rather than answer false: either way it is a bad ticket, not a network fault to retry.
  let valid: boolean
  try {
    valid = await issuer.verify(encoder.encode(body), sig)
  } catch {
    valid = false
  }
  if (!valid) throw new TicketError('ticket signature is not the coordinator\'s')
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
  } catch {
    throw new TicketError('ticket claims are not JSON')
  }
  const claims = decode(TicketClaims, raw, 'ticket claims')
  const now = req.now ?? Math.floor(Date.now() / 1000)
  if (claims.exp < now) throw new TicketError(`ticket for ${claims.tid} expired ${now - claims.exp}s ago`)
  if (claims.rdr !== req.reader) throw new TicketError(`ticket for ${claims.tid} was issued to another peer`)
  if (claims.src !== req.source) throw new TicketError(`ticket for ${claims.tid} does not cover ${req.source}`)
  if (req.offset < claims.off) throw new TicketError(`offset ${req.offset} is before the ticket's range`)
  if (claims.end !== undefined) {
    const end = req.length === undefined ? Infinity : req.offset + req.length
    if (end > claims.end) throw new TicketError(`range ending at ${end} is beyond the ticket's end ${claims.end}`)
  }
  return claims
}
