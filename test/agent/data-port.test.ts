import { describe, expect, it } from 'vitest'
import { dataPortAddress } from '../../agent/data-port.ts'

describe('agent: where the data port listens (--data-listen)', () => {
  it('defaults to the first mesh listen host on a free port, or all interfaces', () => {
    expect(dataPortAddress(undefined, ['/ip4/127.0.0.1/tcp/0'])).toEqual({ host: '127.0.0.1', port: 0 })
    expect(dataPortAddress(undefined, ['/ip6/::1/tcp/4001'])).toEqual({ host: '::1', port: 0 })
    expect(dataPortAddress(undefined, [])).toEqual({ host: '0.0.0.0', port: 0 })
  })

  it('takes off, host:port, [v6]:port or a port alone', () => {
    expect(dataPortAddress('off', ['/ip4/0.0.0.0/tcp/0'])).toBeUndefined()
    expect(dataPortAddress('10.0.0.5:7000', ['/ip4/0.0.0.0/tcp/0'])).toEqual({ host: '10.0.0.5', port: 7000 })
    expect(dataPortAddress('[::1]:7000', ['/ip4/0.0.0.0/tcp/0'])).toEqual({ host: '::1', port: 7000 })
    expect(dataPortAddress('7000', ['/ip4/127.0.0.1/tcp/0'])).toEqual({ host: '127.0.0.1', port: 7000 })
  })

  it('refuses anything else', () => {
    for (const bad of ['', 'host', 'host:', ':', '70000', 'a:b:c', 'host:-1']) {
      expect(() => dataPortAddress(bad, []), bad).toThrow(/not off, host:port or a port/)
    }
  })
})
