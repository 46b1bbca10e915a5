import { describe, it, expect } from 'vitest'
import { FrameReader, encodeFrame, MAX_FRAME_BYTES, ProtocolError, NetworkError, decode, ControlEnvelope, DataRequest } from '../../mesh/index.ts'

async function * chunks (...parts: Uint8Array[]): AsyncGenerator<Uint8Array> { yield * parts }
function split (bytes: Uint8Array, at: number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let prev = 0
  for (const i of [...at, bytes.byteLength]) { out.push(bytes.subarray(prev, i)); prev = i }
  return out
}

describe('wire frames', () => {
  it('reads frames and raw bytes whatever the chunk boundaries', async () => {
    const raw = new Uint8Array(10_000).map((_, i) => i % 251)
    const all = Buffer.concat([encodeFrame({ a: 1 }), raw, encodeFrame({ b: 'ü' })])
    for (const cuts of [[], [1], [3, 9, 20], [all.byteLength - 2]]) {
      const r = new FrameReader(chunks(...split(all, cuts)))
      expect(await r.readFrame()).toEqual({ a: 1 })
      const got: Uint8Array[] = []
      for await (const c of r.readBytes(raw.byteLength)) got.push(c)
      expect(Buffer.concat(got)).toEqual(Buffer.from(raw))
      expect(await r.readFrame()).toEqual({ b: 'ü' })
      expect(await r.readFrameOrEnd()).toBeUndefined()
    }
  })

  it('refuses oversize and non-JSON frames with a ProtocolError, and fails on truncated ones', async () => {
    const big = new Uint8Array(4); new DataView(big.buffer).setUint32(0, MAX_FRAME_BYTES + 1)
    await expect(new FrameReader(chunks(big)).readFrame()).rejects.toBeInstanceOf(ProtocolError)
    await expect(new FrameReader(chunks(encodeFrame({ a: 1 }).subarray(0, 6))).readFrame()).rejects.toThrow(/ended inside a frame/)
    await expect(new FrameReader(chunks(new Uint8Array([0, 0]))).readFrame()).rejects.toThrow(/header/)
    const junk = new Uint8Array([0, 0, 0, 3, 0x7b, 0xff, 0x7d])
    await expect(new FrameReader(chunks(junk)).readFrame()).rejects.toThrow(/not valid UTF-8 JSON/)
  })

  it('reports a byte run cut short as a retryable network error', async () => {
    const r = new FrameReader(chunks(new Uint8Array(10)))
    const it = r.readBytes(20)
    await expect((async () => { for await (const _ of it) { /* drain */ } })()).rejects.toBeInstanceOf(NetworkError)
  })

  it('reports a stream that ends where a message was due as a retryable network error, not a malformed message', async () => {
    // The peer closed (or was killed) before it answered: nothing, or a cut frame.
    for (const parts of [[], [encodeFrame({ a: 1 }).subarray(0, 2)], [encodeFrame({ a: 1 }).subarray(0, 6)]]) {
      const err = await new FrameReader(chunks(...parts)).readFrame().catch((e: unknown) => e)
      expect(err).toBeInstanceOf(NetworkError)
      expect(err).toMatchObject({ code: 'network', retryable: true })
    }
    // Where the peer may end (a control channel, a swarm stream), the end between frames is not an error.
    const r = new FrameReader(chunks(encodeFrame({ a: 1 })))
    expect(await r.readFrameOrEnd()).toEqual({ a: 1 })
    expect(await r.readFrameOrEnd()).toBeUndefined()
    await expect(new FrameReader(chunks(encodeFrame({ a: 1 }).subarray(0, 6))).readFrameOrEnd()).rejects.toBeInstanceOf(NetworkError)
  })

  it('checks messages against their schemas and names the bad field', () => {
    expect(() => decode(ControlEnvelope, { v: 2, kind: 'cast', method: 'x', params: {} }, 'control message')).toThrow(ProtocolError)
    expect(() => decode(DataRequest, { v: 1, ticket: 't', source: 's', offset: -1, digest: true }, 'data request')).toThrow(/\/offset/)
    expect(() => decode(DataRequest, { v: 1, ticket: 't', source: 's', offset: 0, digest: true, extra: 1 }, 'data request')).toThrow(ProtocolError)
  })
})
