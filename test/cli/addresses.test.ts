import { describe, it, expect } from 'vitest'
import type { NetworkInterfaceInfo } from 'node:os'
import { apiUrls, meshAddressLines } from '../../cli/addresses.ts'

const ID = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

function iface (address: string, internal: boolean, family: 'IPv4' | 'IPv6' = 'IPv4'): NetworkInterfaceInfo {
  return { address, internal, family, netmask: '', mac: '', cidr: null, scopeid: 0 } as NetworkInterfaceInfo
}

describe('the addresses the coordinator prints', () => {
  it('lists every mesh address, those other hosts can use first, loopback marked', () => {
    expect(meshAddressLines([`/ip4/127.0.0.1/tcp/7701/p2p/${ID}`, `/ip4/10.0.0.5/tcp/7701/p2p/${ID}`, `/ip4/192.0.2.2/tcp/7701/p2p/${ID}`])).toEqual([
      `/ip4/10.0.0.5/tcp/7701/p2p/${ID}`,
      `/ip4/192.0.2.2/tcp/7701/p2p/${ID}`,
      `/ip4/127.0.0.1/tcp/7701/p2p/${ID}   (this host only)`
    ])
  })

  it('expands a wildcard API host to each interface address, and keeps a named one', () => {
    const interfaces = { lo: [iface('127.0.0.1', true), iface('::1', true, 'IPv6')], eth0: [iface('10.0.0.5', false)] }
    expect(apiUrls('http://127.0.0.1:7700', '0.0.0.0', interfaces)).toEqual(['http://10.0.0.5:7700', 'http://127.0.0.1:7700'])
    expect(apiUrls('http://10.0.0.5:7700', '10.0.0.5', interfaces)).toEqual(['http://10.0.0.5:7700'])
  })
})
