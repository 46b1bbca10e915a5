import { InvalidArgumentError, parseLocation } from '../mesh/index.ts'
import type { Location } from '../mesh/index.ts'
import type { TransferInput } from './model.ts'

/** Limits shared by the store (which enforces them for every caller) and the API schemas (which document them). */
export const LIMITS = {
  priority: { min: -1000, max: 1000 },
  retries: { min: 0, max: 100, default: 3 },
  locationLength: 4096,
  labels: 32,
  labelKeyPattern: '^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$',
  labelValueLength: 256,
  idempotencyKeyLength: 128
} as const

const LABEL_KEY = new RegExp(LIMITS.labelKeyPattern)
const SHA256_HEX = /^[0-9a-f]{64}$/

export interface PreparedInput {
  source: string
  destination: string
  checksum?: { algorithm: 'sha256', value: string }
  priority: number
  retries: number
  labels: Record<string, string>
  agents: string[]
}

/** The agents a location involves: the agent of an agent:// URL, or the `via` of a plug-in URL. */
export function locationAgents (loc: Location): string[] {
  if (loc.kind === 'agent') return [loc.agent]
  return loc.via !== undefined ? [loc.via] : []
}

export function parseEndpoints (input: { source: string, destination: string }): { source: Location, destination: Location } {
  const source = parseLocation(input.source, 'source')
  const destination = parseLocation(input.destination, 'destination')
  if (source.url.href === destination.url.href) {
    throw new InvalidArgumentError('destination: must differ from source')
  }
  return { source, destination }
}

/** Validates an input and fills its defaults; throws InvalidArgumentError naming the field. */
export function prepareInput (input: TransferInput): PreparedInput {
  for (const field of ['source', 'destination'] as const) {
    const value: unknown = input[field]
    if (typeof value !== 'string') throw new InvalidArgumentError(`${field}: must be a string`)
    if (value.length > LIMITS.locationLength) throw new InvalidArgumentError(`${field}: longer than ${LIMITS.locationLength} characters`)
  }
  const { source, destination } = parseEndpoints(input)
  const priority = input.priority ?? 0
  if (!Number.isInteger(priority) || priority < LIMITS.priority.min || priority > LIMITS.priority.max) {
    throw new InvalidArgumentError(`priority: must be an integer from ${LIMITS.priority.min} to ${LIMITS.priority.max}`)
  }
  const retries = input.retries ?? LIMITS.retries.default
  if (!Number.isInteger(retries) || retries < LIMITS.retries.min || retries > LIMITS.retries.max) {
    throw new InvalidArgumentError(`retries: must be an integer from ${LIMITS.retries.min} to ${LIMITS.retries.max}`)
  }
  const prepared: PreparedInput = {
    source: input.source,
    destination: input.destination,
    priority,
    retries,
    labels: prepareLabels(input.labels),
    agents: [...new Set([...locationAgents(source), ...locationAgents(destination)])]
  }
  if (input.checksum !== undefined) prepared.checksum = prepareChecksum(input.checksum)
  return prepared
}

function prepareChecksum (checksum: { algorithm: string, value: string }): { algorithm: 'sha256', value: string } {
  if (checksum.algorithm !== 'sha256') throw new InvalidArgumentError('checksum.algorithm: must be sha256')
  const value = typeof checksum.value === 'string' ? checksum.value.toLowerCase() : ''
  if (!SHA256_HEX.test(value)) throw new InvalidArgumentError('checksum.value: must be 64 hex digits')
  return { algorithm: 'sha256', value }
}

function prepareLabels (labels: Record<string, string> | undefined): Record<string, string> {
  if (labels === undefined) return {}
  const entries = Object.entries(labels)
  if (entries.length > LIMITS.labels) throw new InvalidArgumentError(`labels: at most ${LIMITS.labels} labels`)
  for (const [key, value] of entries) {
    if (!LABEL_KEY.test(key)) throw new InvalidArgumentError(`labels: '${key}' is not a valid label key`)
    if (typeof value !== 'string' || value.length > LIMITS.labelValueLength) {
      throw new InvalidArgumentError(`labels.${key}: must be a string of at most ${LIMITS.labelValueLength} characters`)
    }
  }
  return Object.fromEntries(entries)
}
