/** protocols/: the plug-in contract and the built-in plug-ins. Imports only mesh/. */
export type * from './contract.ts'
