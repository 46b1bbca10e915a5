import { InvalidArgumentError, PermissionDeniedError, StaccatoError } from './errors.ts'

/**
 * A port this process was told to listen on and could not: the operator's
 * to fix, so it is said in one line that names the address and the option
 * that chose it, instead of a listener's stack trace.
 */
export class AddressInUseError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('address_in_use', message, false, options) }
}

/** What a server listening for us is, and the option that sets its address (for the message). */
export interface ListenSite {
  /** "the REST API", "the mesh", "the data port". */
  what: string
  /** The command-line option that chooses the address, e.g. "--api-port". */
  option: string
}

/** A TCP listen failure on host:port as one of our errors; any other error is returned as it is. */
export function listenError (err: unknown, site: ListenSite, host: string, port: number): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return byCode(code, site, `${host.includes(':') ? `[${host}]` : host}:${port}`, err) ?? err
}

function byCode (code: string | undefined, site: ListenSite, address: string, cause: unknown): StaccatoError | undefined {
  switch (code) {
    case 'EADDRINUSE':
      return new AddressInUseError(`${site.what} cannot listen on ${address}: the address is already in use (another process holds it; choose another with ${site.option})`, { cause })
    case 'EACCES':
    case 'EPERM':
      return new PermissionDeniedError(`${site.what} cannot listen on ${address}: not permitted (ports below 1024 need privileges; choose another with ${site.option})`, { cause })
    case 'EADDRNOTAVAIL':
      return new InvalidArgumentError(`${site.what} cannot listen on ${address}: no interface of this host has that address (${site.option})`, { cause })
    default:
      return undefined
  }
}

/**
 * libp2p reports every listen address that failed in the message of one
 * UnsupportedListenAddressesError ("  /ip4/…/tcp/7701: Error: listen
 * EADDRINUSE: …"), with no error objects to read: the first failed address
 * and its errno are taken from there.
 */
export function meshListenError (err: unknown, option: string): unknown {
  if (!(err instanceof Error) || err.name !== 'UnsupportedListenAddressesError') return err
  for (const line of err.message.split('\n')) {
    const m = /^\s*(\/\S+): .*?\b(E[A-Z]+)\b/.exec(line)
    if (m === null) continue
    return byCode(m[2], { what: 'the mesh', option }, m[1], err) ?? new InvalidArgumentError(`the mesh cannot listen on ${m[1]}: ${line.trim().slice(m[1].length + 2)} (${option})`, { cause: err })
  }
  return new InvalidArgumentError(`the mesh cannot listen on its addresses (${option}): ${err.message}`, { cause: err })
}
