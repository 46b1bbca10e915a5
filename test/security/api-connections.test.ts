import { request } from 'node:http'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { clientKey } from '../../coordinator/api/connections.ts'
import { SecureApi } from './helpers.ts'

/**
 * Real sockets on loopback against the REST server: one client address
 * cannot hold every connection, and a client that never finishes its
 * headers is disconnected. 127.0.0.2 and 127.0.0.3 act as other hosts.
 */

const HALF_REQUEST = 'GET /healthz HTTP/1.1\r\nHost: staccato\r\nX-Slow: '

interface Probe { socket: Socket, closed: boolean }

async function open (url: string, localAddress: string, send?: string): Promise<Probe> {
  const { hostname, port } = new URL(url)
  const socket = connect({ host: hostname, port: Number(port), localAddress })
  const probe = { socket, closed: false }
  socket.on('close', () => { probe.closed = true })
  socket.on('error', () => {})
  // Read what the server sends (a 408), or its end is never seen and 'close' never comes.
  socket.resume()
  await new Promise<void>(resolve => { socket.once('connect', resolve); socket.once('close', () => resolve()) })
  if (send !== undefined && !probe.closed) socket.write(send)
  return probe
}

async function until (check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

async function healthz (url: string, localAddress: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = request(`${url}/healthz`, { localAddress, agent: false }, res => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('REST connections', () => {
  let api: SecureApi | undefined
  const probes: Probe[] = []
  afterEach(async () => {
    for (const p of probes.splice(0)) p.socket.destroy()
    await api?.stop()
    api = undefined
  })

  it('caps the connections of one address: /healthz answers another while it floods', async () => {
    api = await SecureApi.start({ maxConnections: 32, maxConnectionsPerAddress: 8 })
    // More half-finished requests from one host than the whole server takes.
    for (let i = 0; i < 48; i++) probes.push(await open(api.url, '127.0.0.3', HALF_REQUEST))
    await until(() => probes.filter(p => p.closed).length >= 40, 'all but 8 of the flood to be disconnected')
    expect(probes.filter(p => !p.closed)).toHaveLength(8)
    expect(await healthz(api.url, '127.0.0.2')).toBe(200)
    // The flooding host gets its slots back as its connections close.
    for (const p of probes.filter(p => !p.closed)) p.socket.destroy()
    await until(() => probes.every(p => p.closed), 'the flood to close')
    // The server sees the closes a moment after the client: ask until it answers (bounded).
    let status = 0
    for (let attempt = 0; attempt < 100 && status !== 200; attempt++) {
      status = await healthz(api.url, '127.0.0.3').catch(() => 0)
      if (status !== 200) await new Promise(resolve => setTimeout(resolve, 20))
    }
    expect(status).toBe(200)
  })

  it('disconnects a client that does not finish its headers in time, and one that sends nothing', async () => {
    api = await SecureApi.start({ headersTimeoutMs: 300 })
    const slow = await open(api.url, '127.0.0.2', HALF_REQUEST)
    const silent = await open(api.url, '127.0.0.2')
    probes.push(slow, silent)
    await until(() => silent.closed, 'the silent client to be disconnected')
    await until(() => slow.closed, 'the slow client to be disconnected')
    expect(await healthz(api.url, '127.0.0.2')).toBe(200)
  })

  it('counts a client by its IPv4 address, also when IPv4-mapped, and by its IPv6 /64', () => {
    expect(clientKey('192.0.2.7')).toBe('192.0.2.7')
    expect(clientKey('::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64')
    expect(clientKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64')
    expect(clientKey('2001:db8::1')).toBe('2001:db8:0:0::/64')
    expect(clientKey('::1')).toBe('0:0:0:0::/64')
    expect(clientKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64')
  })
})
