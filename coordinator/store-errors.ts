import { StaccatoError } from '../mesh/index.ts'

/** The transfer is not in a state that allows the change (the API answers 409). */
export class InvalidStateError extends StaccatoError {
  constructor (message: string, options?: ErrorOptions) { super('invalid_state', message, false, options) }
}
