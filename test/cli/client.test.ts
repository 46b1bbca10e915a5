import { describe, it, expect, afterEach } from 'vitest'
import { createServer } from 'node:http'
import type { Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ApiClient, CliError } from '../../cli/client.ts'
import { isCursorExpired, oldestKept, readChanges } from '../../cli/feed.ts'

/** A server on loopback whose every answer is what `answer` writes. */
async function serve (answer: (res: ServerResponse) => void): Promise<Server> {
  const server = createServer((_req, res) => answer(res))
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return server
}

describe('the CLI API client', () => {
  let server: Server | undefined
  afterEach(async () => { await new Promise(resolve => server?.close(resolve) ?? resolve(undefined)) })

  it('reports an answer cut off mid-body as unavailable, not as an empty result', async () => {
    server = await serve(res => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' })
      // The connection drops once the head and a part of the body are out, before the promised 1000 bytes.
      res.write('{"items":[', () => res.socket?.destroy())
    })
    const client = new ApiClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
    const err = await client.request('GET', '/v1/transfers').then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(CliError)
    expect((err as CliError).code).toBe('unavailable')
  })

  it('still reports an error status whose body is cut off by its status', async () => {
    server = await serve(res => {
      res.writeHead(503, { 'content-length': '1000' })
      res.write('{"co', () => res.socket?.destroy())
    })
    const client = new ApiClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
    const err = await client.request('GET', '/v1/transfers').then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(CliError)
    expect((err as CliError).message).toMatch(/503/)
  })

  it('reads the change feed\'s cursor_expired answer off the API\'s error code, with the oldest event kept', async () => {
    server = await serve(res => {
      res.writeHead(410, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ code: 'cursor_expired', message: 'events before 42 are no longer kept', oldest: 42 }))
    })
    const client = new ApiClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
    const err = await readChanges(client, 3, 0).then(() => undefined, (e: unknown) => e)
    expect(isCursorExpired(err)).toBe(true)
    expect(oldestKept(err as CliError)).toBe(42)
    expect((err as CliError).exitCode).toBe(1)
    expect(isCursorExpired(new CliError('unavailable', 'down', 1))).toBe(false)
  })
})
