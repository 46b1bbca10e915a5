import { InvalidArgumentError } from '../mesh/index.ts'
import { parseSize } from '../protocols/index.ts'

/** `images=/srv/images` or `images=/srv/images:ro`. */
export function parseVolume (text: string): { name: string, root: string, readOnly: boolean } {
  const m = /^([A-Za-z0-9._-]+)=(.+?)(:ro|:rw)?$/.exec(text)
  if (m === null) throw new InvalidArgumentError(`--volume '${text}' must look like name=/path or name=/path:ro`)
  return { name: m[1], root: m[2], readOnly: m[3] === ':ro' }
}

export function parseRate (flag: string, text: string | undefined): number | undefined {
  if (text === undefined || text === '' || text === '0') return undefined
  try {
    return parseSize(text.replace(/\/s$/i, ''))
  } catch {
    throw new InvalidArgumentError(`${flag} '${text}' must be bytes per second, e.g. 100MiB`)
  }
}

export function parseIntOption (flag: string, text: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${flag} '${text}' must be a whole number`)
  return n
}

export function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}
