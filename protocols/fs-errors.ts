import {
  InvalidArgumentError, IsADirectoryError, NoSpaceError, NotFoundError, PermissionDeniedError, toStaccatoError
} from '../mesh/index.ts'
import type { StaccatoError } from '../mesh/index.ts'

type ErrorClass = new (message: string, options?: ErrorOptions) => StaccatoError

const BY_CODE: Record<string, [ErrorClass, string]> = {
  ENOENT: [NotFoundError, 'not found'],
  ENOTDIR: [NotFoundError, 'not found (a parent is not a directory)'],
  EACCES: [PermissionDeniedError, 'permission denied'],
  EPERM: [PermissionDeniedError, 'operation not permitted'],
  EROFS: [PermissionDeniedError, 'read-only file system'],
  ELOOP: [PermissionDeniedError, 'symbolic link not followed'],
  EISDIR: [IsADirectoryError, 'is a directory'],
  // O_NONBLOCK open of a FIFO with no reader, or of a device with nothing behind it.
  ENXIO: [InvalidArgumentError, 'not a regular file'],
  ENAMETOOLONG: [InvalidArgumentError, 'name too long'],
  ENOSPC: [NoSpaceError, 'no space left on device'],
  EDQUOT: [NoSpaceError, 'disk quota exceeded']
}

/**
 * Maps a file-system error to its named class with a message about `what`
 * (a volume path): the host's absolute paths stay out of transfer records.
 */
export function fsError (err: unknown, what: string): StaccatoError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  const known = code === undefined ? undefined : BY_CODE[code]
  if (known !== undefined) return new known[0](`${what}: ${known[1]}`, { cause: err })
  return toStaccatoError(err)
}

export function isNoSpace (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}
