import { multiaddr } from '@multiformats/multiaddr'
import { DirectListener, InvalidArgumentError, listenError } from '../mesh/index.ts'
import type { DirectDataOptions } from './direct-offer.ts'

export interface DataPortAddress { host: string, port: number }

/**
 * Where the data port listens: `off`, `host:port`, `[v6]:port` or a port alone;
 * when absent, the host of the first libp2p listen address on a port the system
 * picks, so that whoever reaches the agent's mesh port reaches this one too.
 */
export function dataPortAddress (dataListen: string | undefined, listen: string[]): DataPortAddress | undefined {
  if (dataListen === 'off') return undefined
  const meshHost = listen.length > 0
    ? multiaddr(listen[0]).getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value
    : undefined
  const host = meshHost ?? '0.0.0.0'
  if (dataListen === undefined) return { host, port: 0 }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d+)$/.exec(dataListen) ?? /^()()(\d+)$/.exec(dataListen)
  const port = m === null ? NaN : Number(m[3])
  if (m === null || !Number.isInteger(port) || port > 65535) throw new InvalidArgumentError(`data listen address '${dataListen}' is not off, host:port or a port`)
  return { host: m[1] !== '' && m[1] !== undefined ? m[1] : m[2] !== '' && m[2] !== undefined ? m[2] : host, port }
}

/** The data server's direct port, or undefined (bulk bytes then stay on libp2p streams) when it is off or a port the system picks cannot listen; a chosen port that cannot listen is an error. */
export async function openDataPort (address: DataPortAddress | undefined, log: (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void): Promise<DirectDataOptions | undefined> {
  if (address === undefined) return undefined
  try {
    const listener = await DirectListener.open({
      host: address.host,
      port: address.port,
      onRefused: err => { log('direct data connection refused', { error: err.message }, 'warn') }
    })
    // A wildcard address says nothing to a reader: it then uses the address it reached the mesh port at.
    const wildcard = address.host === '0.0.0.0' || address.host === '::'
    return { listener, ...(wildcard ? {} : { host: address.host }) }
  } catch (err) {
    // A port the operator chose is theirs to fix; only a port left to the system may quietly fall back to the streams.
    if (address.port !== 0) throw listenError(err, { what: 'the data port', option: '--data-listen' }, address.host, address.port)
    log('cannot open the data port; bulk bytes stay on libp2p streams', { ...address, error: (err as Error).message }, 'warn')
    return undefined
  }
}
