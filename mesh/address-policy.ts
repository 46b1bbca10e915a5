import { lookup as dnsLookup } from 'node:dns'
import type { LookupAddress, LookupAllOptions } from 'node:dns'
import { BlockList, isIP } from 'node:net'
import { InvalidArgumentError, StaccatoError } from './errors.ts'

/**
 * Which addresses an outbound request chosen by a client may reach: the
 * coordinator's webhooks and the agents' http(s) sources and destinations.
 * Without it the coordinator or an agent could be made to talk to the cloud
 * metadata service, to services on its own loopback or to the private
 * network it sits in. The check is made on the addresses a name resolves to,
 * inside the connection's own lookup, so the address checked is the address
 * dialled (a name that resolves differently a second time gains nothing).
 * It lives in mesh/ because both the coordinator and the protocol plug-ins
 * the agents run use it.
 */

export type AddressClass = 'loopback' | 'link-local' | 'metadata' | 'private'
export const ADDRESS_CLASSES: readonly AddressClass[] = ['loopback', 'link-local', 'metadata', 'private']

/** The address (or name) is of a class the configuration does not allow. */
export class AddressRefusedError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('address_refused', message, false, options) }
}

// The instance metadata services of AWS (IPv4 and IPv6), GCP, Azure and others.
const METADATA_ADDRESSES = ['169.254.169.254', 'fd00:ec2::254']
const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata.goog'])

function blockList (build: (b: BlockList) => void): BlockList {
  const b = new BlockList()
  build(b)
  return b
}

// BlockList also matches IPv4-mapped IPv6 forms (::ffff:169.254.169.254) against the IPv4 rules.
const LISTS: Record<AddressClass, BlockList> = {
  // 0.0.0.0 and :: (unspecified) reach the local host too.
  loopback: blockList(b => {
    b.addSubnet('127.0.0.0', 8, 'ipv4')
    b.addSubnet('0.0.0.0', 8, 'ipv4')
    b.addAddress('::1', 'ipv6')
    b.addAddress('::', 'ipv6')
  }),
  'link-local': blockList(b => {
    b.addSubnet('169.254.0.0', 16, 'ipv4')
    b.addSubnet('fe80::', 10, 'ipv6')
  }),
  metadata: blockList(b => {
    for (const a of METADATA_ADDRESSES) b.addAddress(a, isIP(a) === 6 ? 'ipv6' : 'ipv4')
  }),
  // RFC 1918, carrier-grade NAT (RFC 6598) and IPv6 unique-local addresses: the network the host sits in.
  private: blockList(b => {
    b.addSubnet('10.0.0.0', 8, 'ipv4')
    b.addSubnet('172.16.0.0', 12, 'ipv4')
    b.addSubnet('192.168.0.0', 16, 'ipv4')
    b.addSubnet('100.64.0.0', 10, 'ipv4')
    b.addSubnet('fc00::', 7, 'ipv6')
  })
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/** One entry of an allow list: a class name, an address or a range in CIDR notation (`127.0.0.0/8`, `fd00::/8`). */
export function parseAddressAllow (list: readonly string[]): string[] {
  for (const entry of list) rangeOf(entry)
  return [...list]
}

function isClass (entry: string): entry is AddressClass {
  return (ADDRESS_CLASSES as readonly string[]).includes(entry)
}

function rangeOf (entry: string): { address: string, prefix: number, type: 'ipv4' | 'ipv6' } | AddressClass {
  if (isClass(entry)) return entry
  const [address, prefixText, ...rest] = entry.split('/')
  const family = isIP(address)
  const max = family === 6 ? 128 : 32
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN
  if (family === 0 || rest.length > 0 || !(prefix >= 0 && prefix <= max)) {
    throw new InvalidArgumentError(`'${entry}' is neither an address class (${ADDRESS_CLASSES.join(', ')}) nor an address or CIDR range such as 127.0.0.0/8`)
  }
  return { address, prefix, type: family === 6 ? 'ipv6' : 'ipv4' }
}

export class AddressPolicy {
  readonly #allowed = new Set<AddressClass>()
  readonly #ranges = new BlockList()
  #hasRanges = false
  readonly #resolve: typeof dnsLookup

  /** `allow`: classes, addresses or CIDR ranges that may be reached although of a refused class. */
  constructor (allow: Iterable<string> = [], resolve: typeof dnsLookup = dnsLookup) {
    for (const entry of allow) {
      const r = rangeOf(entry)
      if (typeof r === 'string') {
        this.#allowed.add(r)
      } else {
        this.#ranges.addSubnet(r.address, r.prefix, r.type)
        this.#hasRanges = true
      }
    }
    this.#resolve = resolve
  }

  /** The classes an IP address falls in. */
  classify (address: string): AddressClass[] {
    const family = isIP(address)
    if (family === 0) return []
    const type = family === 6 ? 'ipv6' : 'ipv4'
    return ADDRESS_CLASSES.filter(c => LISTS[c].check(address, type))
  }

  /** Why an IP address is refused, or undefined when it may be dialled. */
  refusal (address: string): string | undefined {
    const family = isIP(address)
    if (family === 0) return `${address} is not an IP address`
    // A range opens the classes it overlaps, except the metadata service: `169.254.0.0/16` or `fd00::/8` is not meant to hand out cloud credentials.
    const inRange = this.#hasRanges && this.#ranges.check(address, family === 6 ? 'ipv6' : 'ipv4')
    const refused = this.classify(address).filter(c => !this.#allowed.has(c) && (!inRange || c === 'metadata'))
    return refused.length > 0 ? `${address} is a ${refused.join('/')} address (not allowed by configuration)` : undefined
  }

  /** Checks what can be checked without resolving: the scheme, a literal address, a metadata name. */
  checkUrl (text: string, field = 'url'): URL {
    let url: URL
    try {
      url = new URL(text)
    } catch {
      throw new InvalidArgumentError(`${field}: not a URL`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`${field}: must be an http or https URL`)
    if (url.username !== '' || url.password !== '') throw new InvalidArgumentError(`${field}: must not carry credentials`)
    const why = this.hostRefusal(hostOf(url))
    if (why !== undefined) throw new AddressRefusedError(`${field}: ${why}`)
    return url
  }

  /**
   * Refusal of a host name or literal before any lookup. A literal address is
   * dialled without a lookup, so this check is the only one it gets: callers
   * must make it before every request.
   */
  hostRefusal (host: string): string | undefined {
    const name = host.toLowerCase().replace(/\.$/, '')
    if (METADATA_NAMES.has(name) && !this.#allowed.has('metadata')) return `${name} is a metadata service name (not allowed by configuration)`
    return isIP(name) !== 0 ? this.refusal(name) : undefined
  }

  /**
   * A `lookup` for http.request / net.connect: resolves, and fails the
   * connection when any address the name resolves to is refused.
   */
  readonly lookup = (hostname: string, options: { family?: number | string, all?: boolean, hints?: number }, callback: LookupCallback): void => {
    const why = this.hostRefusal(hostname)
    if (why !== undefined) {
      process.nextTick(() => callback(new AddressRefusedError(why), ''))
      return
    }
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : (options.family as 0 | 4 | 6 | undefined) ?? 0
    const opts: LookupAllOptions = { all: true, family, hints: options.hints }
    this.#resolve(hostname, opts, (err, addresses) => {
      if (err !== null) return callback(err, '')
      for (const a of addresses) {
        const refused = this.refusal(a.address)
        if (refused !== undefined) return callback(new AddressRefusedError(`${hostname} resolves to ${refused}`), '')
      }
      if (addresses.length === 0) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '')
      if (options.all === true) return callback(null, addresses)
      callback(null, addresses[0].address, addresses[0].family)
    })
  }
}

/** The host of a URL without the brackets of an IPv6 literal. */
export function hostOf (url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
}
