import { networkInterfaces } from 'node:os'
import type { NetworkInterfaceInfo } from 'node:os'

const LOOPBACK = /^\/(ip4\/127\.|ip6\/::1\/|dns[46]?\/localhost\/)/

export function isLoopbackMultiaddr (addr: string): boolean {
  return LOOPBACK.test(addr)
}

/** The mesh addresses agents may be given, those other hosts can use first; loopback ones are marked. */
export function meshAddressLines (multiaddrs: readonly string[]): string[] {
  const outside = multiaddrs.filter(a => !isLoopbackMultiaddr(a))
  const local = multiaddrs.filter(a => isLoopbackMultiaddr(a)).map(a => `${a}   (this host only)`)
  return [...outside, ...local]
}

/**
 * The REST API's URLs: for a wildcard host (0.0.0.0, ::) one per address of
 * this host's interfaces, outside ones first, since 127.0.0.1 alone tells
 * another host nothing.
 */
export function apiUrls (apiUrl: string, apiHost: string, interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string[] {
  if (apiHost !== '0.0.0.0' && apiHost !== '::') return [apiUrl]
  const url = new URL(apiUrl)
  const all = Object.values(interfaces).flatMap(list => list ?? [])
    .filter(i => i.family === 'IPv4' || apiHost === '::')
    .sort((a, b) => Number(a.internal) - Number(b.internal))
  const urls = all.map(i => { const u = new URL(url); u.hostname = i.family === 'IPv6' ? `[${i.address}]` : i.address; return u.toString().replace(/\/$/, '') })
  return urls.length > 0 ? [...new Set(urls)] : [apiUrl]
}
