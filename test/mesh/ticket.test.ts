import { describe, it, expect } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { signTicket, verifyTicket, issuerKey, TicketError } from '../../mesh/index.ts'

describe('tickets', async () => {
  const coordinator = await generateKeyPair('Ed25519')
  const other = await generateKeyPair('Ed25519')
  const issuer = issuerKey(peerIdFromPrivateKey(coordinator).toString())
  const reader = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const now = 1_800_000_000
  const claims = { v: 1 as const, tid: 'tr_1', src: 'agent://a/vol/a.img', off: 0, end: 1000, rdr: reader, exp: now + 60 }
  const req = { reader, source: 'agent://a/vol/a.img', offset: 0, length: 1000, now }

  it('verifies a ticket signed by the coordinator for its reader, source and range', async () => {
    const t = await signTicket(coordinator, claims)
    expect(await verifyTicket(t, issuer, req)).toEqual(claims)
    expect(await verifyTicket(t, issuer, { ...req, offset: 500, length: 500 })).toEqual(claims)
  })

  const refusals: Array<[string, Partial<typeof req>, RegExp]> = [
    ['another reader', { reader: peerIdFromPrivateKey(other).toString() }, /another peer/],
    ['another source', { source: 'agent://a/vol/../b.img' }, /does not cover/],
    ['another volume', { source: 'agent://a/other/a.img' }, /does not cover/],
    ['a range past its end', { offset: 500, length: 501 }, /beyond/],
    ['an open-ended read of a bounded ticket', { length: undefined }, /beyond/],
    ['use after expiry', { now: now + 61 }, /expired/]
  ]
  for (const [what, change, reason] of refusals) {
    it(`refuses ${what}`, async () => {
      const t = await signTicket(coordinator, claims)
      await expect(verifyTicket(t, issuer, { ...req, ...change })).rejects.toThrow(reason)
    })
  }

  it('refuses a ticket signed by another key, and a tampered one', async () => {
    const forged = await signTicket(other, claims)
    await expect(verifyTicket(forged, issuer, req)).rejects.toBeInstanceOf(TicketError)
    const t = await signTicket(coordinator, claims)
    const [, sig] = t.split('.')
    const widened = Buffer.from(JSON.stringify({ ...claims, end: 10 ** 9 })).toString('base64url')
    await expect(verifyTicket(`${widened}.${sig}`, issuer, req)).rejects.toThrow(/signature/)
    await expect(verifyTicket('garbage', issuer, req)).rejects.toThrow(/form/)
  })
})
