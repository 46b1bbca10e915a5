/** mesh/: what the coordinator and agents share. It imports no other unit. */
export * from './errors.ts'
export * from './location.ts'
