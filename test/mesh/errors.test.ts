import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { connect, createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { open } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { StreamResetError, StreamAbortedError, ConnectionClosedError, UnsupportedProtocolError } from '@libp2p/interface'
import {
  AGENT_SIDE, COORDINATOR_SIDE, CanceledError, ControlChannel, InternalError, NetworkError, NotFoundError, ProtocolError, TimeoutError, createMeshNode, errorFields, fromErrorInfo, toStaccatoError
} from '../../mesh/index.ts'
import type { MeshNode, StaccatoError } from '../../mesh/index.ts'

/** A loopback port nothing listens on: bound, then closed. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>(resolve => server.close(() => resolve()))
  return port
}

async function caught (fn: () => unknown): Promise<unknown> {
  try {
    await fn()
  } catch (err) {
    return err
  }
  throw new Error('expected a throw')
}

describe('toStaccatoError: unknown is internal, a lost connection is network', () => {
  let node: MeshNode
  beforeAll(async () => { node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] }) })
  afterAll(async () => { await node?.stop() })

  it('a TypeError from a bug is internal, not retryable, and keeps the stack of the fault', async () => {
    const bug = await caught(() => (undefined as unknown as { size: number }).size)
    expect(bug).toBeInstanceOf(TypeError)
    const e = toStaccatoError(bug)
    expect(e).toBeInstanceOf(InternalError)
    expect(e.code).toBe('internal')
    expect(e.retryable).toBe(false)
    expect(e.stack).toBe((bug as Error).stack)
    expect(errorFields(e)).toEqual({ code: 'internal', error: e.message, stack: (bug as Error).stack })
    // A plain Error or a thrown string says nothing of the network either.
    expect(toStaccatoError(new Error('invariant broken')).code).toBe('internal')
    expect(toStaccatoError('oops').code).toBe('internal')
    // And it survives the wire as what it is.
    expect(fromErrorInfo(e.toJSON())).toBeInstanceOf(InternalError)
  })

  it('a refused TCP connection and a reset socket are network errors', async () => {
    const port = await closedPort()
    const refused = await new Promise<Error>(resolve => connect(port, '127.0.0.1').once('error', resolve))
    expect((refused as NodeJS.ErrnoException).code).toBe('ECONNREFUSED')
    expect(toStaccatoError(refused)).toBeInstanceOf(NetworkError)

    // The server resets the connection (RST) while the client waits to read.
    const server = createServer(socket => { socket.resetAndDestroy() })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const reset = await new Promise<Error>(resolve => connect((server.address() as AddressInfo).port, '127.0.0.1').once('error', resolve))
    await new Promise<void>(resolve => server.close(() => resolve()))
    expect((reset as NodeJS.ErrnoException).code).toBe('ECONNRESET')
    expect(toStaccatoError(reset)).toMatchObject({ code: 'network', retryable: true })
  })

  it('fetch wraps the socket error in a TypeError: the cause decides, not the wrapper', async () => {
    const err = await caught(async () => await fetch(`http://127.0.0.1:${await closedPort()}/`))
    expect(err).toBeInstanceOf(TypeError)
    expect(toStaccatoError(err)).toMatchObject({ code: 'network', retryable: true })
  })

  it('libp2p dial failures and stream teardown are network errors', async () => {
    const port = await closedPort()
    const other = await generateKeyPair('Ed25519')
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    const dialFailed = await caught(async () => await node.dialProtocol(multiaddr(`/ip4/127.0.0.1/tcp/${port}/p2p/${peerIdFromPrivateKey(other).toString()}`), '/staccato/none/1'))
    expect(toStaccatoError(dialFailed)).toMatchObject({ code: 'network', retryable: true })

    const peer = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    try {
      const unsupported = await caught(async () => await peer.dialProtocol(node.getMultiaddrs(), '/staccato/none/1'))
      expect(toStaccatoError(unsupported).retryable).toBe(true)
    } finally {
      await peer.stop()
    }
    for (const err of [new StreamResetError('reset'), new StreamAbortedError('aborted'), new ConnectionClosedError('closed'), new UnsupportedProtocolError('no')]) {
      expect(toStaccatoError(err)).toBeInstanceOf(NetworkError)
    }
  })

  it('keeps the classes it had: errno of files, timeouts, ours wrapped by a library', async () => {
    const missing = await caught(async () => await open('/nonexistent/staccato/file'))
    expect(toStaccatoError(missing)).toBeInstanceOf(NotFoundError)
    const timedOut = await caught(async () => await sleep(60_000, undefined, { signal: AbortSignal.timeout(1) }))
    expect(toStaccatoError(timedOut)).toBeInstanceOf(TimeoutError)
    const canceled = new CanceledError()
    expect(toStaccatoError(new Error('stream aborted', { cause: canceled }))).toBe(canceled)
    expect(toStaccatoError(Object.assign(new Error('bad frame'), { name: 'InvalidFrameError' }))).toBeInstanceOf(ProtocolError)
  })

  it('looks names up as own keys only, and survives a cause cycle', () => {
    expect(toStaccatoError(Object.assign(new Error('x'), { code: 'constructor', name: 'toString' })).code).toBe('internal')
    const a = new Error('a') as Error & { cause?: unknown }
    const b = new Error('b', { cause: a })
    a.cause = b
    expect(toStaccatoError(a).code).toBe('internal')
    expect(fromErrorInfo({ code: 'constructor', message: 'm', retryable: true }).code).toBe('constructor')
  })

  it('a bug in a control call handler reaches the caller as internal (not retryable) and is logged with its stack where it happened', async () => {
    const seen: Array<{ method: string, err: StaccatoError }> = []
    await node.handle('/staccato/test-control/1', stream => {
      new ControlChannel(stream, COORDINATOR_SIDE, {
        table: {
          handlers: {
            register: async () => ({}),
            report: async () => ({ size: (undefined as unknown as { size: number }).size }),
            swarmReport: async () => ({}),
            treeFiles: async () => ({}),
            heartbeat: async () => {},
            progress: async () => {},
            swarmStats: async () => {},
            swarmProgress: async () => {},
            imageWant: async () => ({ self: true })
          },
          context: () => undefined
        },
        onInternalError: (method, err) => { seen.push({ method, err }) }
      })
    })
    const peer = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    try {
      const channel = new ControlChannel(await peer.dialProtocol(node.getMultiaddrs(), '/staccato/test-control/1'), AGENT_SIDE)
      await expect(channel.call('report', { transferId: 'tr_x', attempt: 1, outcome: 'failed' })).rejects.toMatchObject({ code: 'internal', retryable: false })
      expect(seen).toHaveLength(1)
      expect(seen[0].method).toBe('report')
      expect(seen[0].err.stack).toMatch(/TypeError/)
      channel.close()
    } finally {
      await peer.stop()
    }
  })
})
