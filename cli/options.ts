import { InvalidArgumentError } from '../mesh/index.ts'
import type { Volume } from '../protocols/index.ts'

/** `images=/srv/images` or `images=/srv/images:ro`. */
export function parseVolume (text: string): Volume {
  const m = /^([A-Za-z0-9._-]+)=(.+?)(:ro|:rw)?$/.exec(text)
  if (m === null) throw new InvalidArgumentError(`--volume '${text}' must look like name=/path or name=/path:ro`)
  return { name: m[1], root: m[2], readOnly: m[3] === ':ro' }
}
