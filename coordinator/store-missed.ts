import { NotFoundError, errorFields, toStaccatoError } from '../mesh/index.ts'
import { InvalidStateError } from './store-errors.ts'

type Log = (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn' | 'error') => void

/**
 * The catch handler of a store write the caller can go on without (the next
 * report, progress or scheduling pass writes again). Losing a race (a
 * cancel, an outcome or a delete got there first) is expected and says
 * nothing; any other failure (the store closed, a disk error, a report the
 * store refused) is logged, so that it is not lost without a word.
 */
export function storeMissed (log: Log, what: string, fields: Record<string, unknown>): (err: unknown) => void {
  return err => {
    if (err instanceof InvalidStateError || err instanceof NotFoundError) return
    log(what, { ...fields, ...errorFields(toStaccatoError(err)) }, 'warn')
  }
}
