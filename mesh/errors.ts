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

const FATAL_ERRNO: Record<string, new (m: string, o?: ErrorOptions) => StaccatoError> = {
  ENOENT: NotFoundError,
  ENOTDIR: NotFoundError,
  EACCES: PermissionDeniedError,
  EPERM: PermissionDeniedError,
  EROFS: PermissionDeniedError,
  EISDIR: InvalidArgumentError,
  ENOSPC: NoSpaceError,
  EDQUOT: NoSpaceError
}

/**
 * Turns anything thrown into a StaccatoError: errno codes from the file system
 * map to their fatal classes; anything unknown is treated as a retryable
 * network-ish failure, because retrying is the safer default for a transient fault
 * and attempts are bounded.
 */
export function toStaccatoError (err: unknown): StaccatoError {
  if (err instanceof StaccatoError) return err
  const e = err as NodeJS.ErrnoException | undefined
  const message = e?.message ?? String(err)
  const Klass = e?.code != null ? FATAL_ERRNO[e.code] : undefined
  if (Klass != null) return new Klass(message, { cause: err })
  if (e?.name === 'AbortError') return new CanceledError(message, { cause: err })
  if (e?.name === 'TimeoutError') return new TimeoutError(message, { cause: err })
  return new NetworkError(message, { cause: err })
}

const BY_CODE: Record<string, new (m: string) => StaccatoError> = {
  not_found: NotFoundError,
  permission_denied: PermissionDeniedError,
  no_space: NoSpaceError,
  source_changed: SourceChangedError,
  checksum_mismatch: ChecksumMismatchError,
  unsupported: UnsupportedError,
  invalid_argument: InvalidArgumentError,
  protocol_error: ProtocolError,
  ticket_invalid: TicketError,
  network: NetworkError,
  agent_offline: AgentOfflineError,
  timeout: TimeoutError,
  canceled: CanceledError
}

/** Rebuilds an error received over the wire so that its class, code and retry class survive. */
export function fromErrorInfo (info: ErrorInfo): StaccatoError {
  // The code comes from a peer: only own keys, or `toString` would name Object.prototype's.
  const Klass = Object.hasOwn(BY_CODE, info.code) ? BY_CODE[info.code] : undefined
  if (Klass !== undefined) {
    const err = new Klass(info.message)
    if (err.retryable === info.retryable) return err
  }
  return new StaccatoError(info.code, info.message, info.retryable)
}
