/**
 * Errors shared by every unit. Each has a stable `code` that the REST API,
 * the wire protocols and transfer records carry, and a `retryable` flag that
 * decides whether a failed transfer goes back to the queue or fails for good.
 */
export class StaccatoError extends Error {
  readonly code: string
  readonly retryable: boolean

  constructor (code: string, message: string, retryable: boolean, options?: ErrorOptions) {
    super(message, options)
    this.code = code
    this.retryable = retryable
    this.name = new.target.name
  }

  toJSON (): ErrorInfo {
    return { code: this.code, message: this.message, retryable: this.retryable }
  }
}

export interface ErrorInfo {
  code: string
  message: string
  retryable: boolean
}

export class NotFoundError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('not_found', message, false, options) }
}

export class PermissionDeniedError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('permission_denied', message, false, options) }
}

export class NoSpaceError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('no_space', message, false, options) }
}

/** The source's size, mtime or etag changed since the transfer started: restart from zero. */
export class SourceChangedError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('source_changed', message, true, options) }
}

export class ChecksumMismatchError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('checksum_mismatch', message, false, options) }
}

export class UnsupportedError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('unsupported', message, false, options) }
}

export class InvalidArgumentError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('invalid_argument', message, false, options) }
}

/** A file was to be written where a directory is (or the reverse): nothing is moved, and another try finds the same. */
export class IsADirectoryError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('is_a_directory', message, false, options) }
}

/** The destination exists and the transfer said not to replace it (`overwrite: never`). */
export class ExistsError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('exists', message, false, options) }
}

/** A peer sent something that does not parse or does not match its schema. */
export class ProtocolError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('protocol_error', message, true, options) }
}

export class TicketError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('ticket_invalid', message, false, options) }
}

export class NetworkError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('network', message, true, options) }
}

export class AgentOfflineError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('agent_offline', message, true, options) }
}

export class TimeoutError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('timeout', message, true, options) }
}

export class CanceledError extends StaccatoError {
  constructor (message = 'canceled', options?: ErrorOptions) { super('canceled', message, false, options) }
}

/** A resource of this host is briefly exhausted or failing (open files, a busy device): worth another attempt. */
export class UnavailableError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('unavailable', message, true, options) }
}

/**
 * Something failed that no class here names: most likely a bug (a TypeError,
 * a broken invariant). Retrying a bug only repeats it, so it is fatal; its
 * stack is the original error's, so that a log of it points at the fault.
 */
export class InternalError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) {
    super('internal', message, false, options)
    const origin = (options?.cause as Error | undefined)?.stack
    if (typeof origin === 'string') this.stack = origin
  }
}

type ErrorClass = new (m: string, o?: ErrorOptions) => StaccatoError

const BY_ERRNO: Record<string, ErrorClass> = {
  ENOENT: NotFoundError,
  ENOTDIR: NotFoundError,
  EACCES: PermissionDeniedError,
  EPERM: PermissionDeniedError,
  EROFS: PermissionDeniedError,
  EISDIR: InvalidArgumentError,
  ENOSPC: NoSpaceError,
  EDQUOT: NoSpaceError,
  // A peer or the path to it went away (sockets, DNS).
  ECONNRESET: NetworkError,
  ECONNREFUSED: NetworkError,
  ECONNABORTED: NetworkError,
  EPIPE: NetworkError,
  EHOSTUNREACH: NetworkError,
  EHOSTDOWN: NetworkError,
  ENETUNREACH: NetworkError,
  ENETDOWN: NetworkError,
  ENETRESET: NetworkError,
  EADDRNOTAVAIL: NetworkError,
  EAI_AGAIN: NetworkError,
  ENOTFOUND: NetworkError,
  ERR_STREAM_PREMATURE_CLOSE: NetworkError,
  ETIMEDOUT: TimeoutError,
  // This host is short of something for a moment.
  EMFILE: UnavailableError,
  ENFILE: UnavailableError,
  EAGAIN: UnavailableError,
  EBUSY: UnavailableError,
  ESTALE: UnavailableError,
  EIO: UnavailableError
}

/**
 * Error names of libp2p 3 (@libp2p/interface, libp2p, @libp2p/utils, yamux,
 * noise) and of the platform (DOMException) that mean the connection, a
 * stream on it, or the dial failed: the peer may be back on the next attempt.
 * (An AbortError is classed by its reason, or else as network: a stream or
 * dial torn down under us. Our own cancels abort with a CanceledError.)
 */
const BY_NAME: Record<string, ErrorClass> = {
  ConnectionClosedError: NetworkError,
  ConnectionClosingError: NetworkError,
  ConnectionFailedError: NetworkError,
  DialError: NetworkError,
  EncryptionFailedError: NetworkError,
  MuxerClosedError: NetworkError,
  MuxerUnavailableError: NetworkError,
  NoValidAddressesError: NetworkError,
  StreamAbortedError: NetworkError,
  StreamClosedError: NetworkError,
  StreamResetError: NetworkError,
  StreamStateError: NetworkError,
  UnexpectedEOFError: NetworkError,
  UnexpectedPeerError: NetworkError,
  TooManyOutboundProtocolStreamsError: NetworkError,
  TooManyInboundProtocolStreamsError: NetworkError,
  UnsupportedProtocolError: NetworkError,
  TimeoutError: TimeoutError,
  // The peer sent bytes that break the muxer's or a codec's rules.
  InvalidFrameError: ProtocolError,
  InvalidMessageError: ProtocolError,
  InvalidMessageLengthError: ProtocolError,
  InvalidDataLengthError: ProtocolError,
  InvalidDataLengthLengthError: ProtocolError,
  ReceiveWindowExceededError: ProtocolError,
  ProtocolError
}

/**
 * Turns anything thrown into a StaccatoError by what it is: errno codes and
 * libp2p error names, looked up along the cause chain (fetch wraps
 * ECONNREFUSED in a TypeError('fetch failed')). Anything else is an
 * InternalError: not retried, and logged with its stack where it is reported.
 */
export function toStaccatoError (err: unknown): StaccatoError {
  if (err instanceof StaccatoError) return err
  const chain = causes(err)
  // Ours, wrapped by a library (a stream aborted with it, say): it already says what happened.
  const ours = chain.find(e => e instanceof StaccatoError)
  if (ours !== undefined) return ours as StaccatoError
  const message = (err as Error | undefined)?.message ?? String(err)
  // An AbortError's cause is the abort reason (a timeout, say), which says more than the abort itself.
  let aborted = false
  for (const e of chain) {
    const { code, name } = e as { code?: unknown, name?: unknown }
    if (name === 'AbortError') {
      aborted = true
      continue
    }
    const Klass = lookup(BY_ERRNO, code) ?? lookup(BY_NAME, name)
    if (Klass !== undefined) return new Klass(message, { cause: err })
  }
  return aborted ? new NetworkError(message, { cause: err }) : new InternalError(message, { cause: err })
}

/** The error and its causes, outermost first; bounded, as a cause chain can be a cycle. */
function causes (err: unknown): object[] {
  const chain: object[] = []
  for (let e = err; typeof e === 'object' && e !== null && chain.length < 8 && !chain.includes(e); e = (e as { cause?: unknown }).cause) chain.push(e)
  return chain
}

/** Own keys only: a code or name such as 'constructor' must not find Object.prototype's. */
function lookup<T> (table: Record<string, T>, key: unknown): T | undefined {
  return typeof key === 'string' && Object.hasOwn(table, key) ? table[key] : undefined
}

/** Log fields for an error: its code and message, and for an internal one the stack that locates the bug. */
export function errorFields (err: StaccatoError): Record<string, unknown> {
  return err.code === 'internal' ? { code: err.code, error: err.message, stack: err.stack } : { code: err.code, error: err.message }
}

const BY_CODE: Record<string, new (m: string) => StaccatoError> = {
  not_found: NotFoundError,
  permission_denied: PermissionDeniedError,
  no_space: NoSpaceError,
  source_changed: SourceChangedError,
  checksum_mismatch: ChecksumMismatchError,
  unsupported: UnsupportedError,
  invalid_argument: InvalidArgumentError,
  is_a_directory: IsADirectoryError,
  exists: ExistsError,
  protocol_error: ProtocolError,
  ticket_invalid: TicketError,
  network: NetworkError,
  agent_offline: AgentOfflineError,
  timeout: TimeoutError,
  canceled: CanceledError,
  unavailable: UnavailableError,
  internal: InternalError
}

/** Rebuilds an error received over the wire so that its class, code and retry class survive. */
export function fromErrorInfo (info: ErrorInfo): StaccatoError {
  const Klass = lookup(BY_CODE, info.code)
  if (Klass !== undefined) {
    const err = new Klass(info.message)
    if (err.retryable === info.retryable) return err
  }
  return new StaccatoError(info.code, info.message, info.retryable)
}
