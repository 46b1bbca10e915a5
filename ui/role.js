import { createContext } from 'preact'
import { useContext } from 'preact/hooks'
import { allows } from './api.js'

/** The signed-in token's role and tenant (GET /v1/whoami), for the pages to show only what it may do. */
export const Me = createContext({ role: 'reader', tenant: '' })

export function useCan (needed) {
  return allows(useContext(Me).role, needed)
}
