import { formatBytes } from './progress.ts'

/** The parts of GET /v1/transfers/:id/swarm an image distribution's progress needs. */
export interface ImageSwarm {
  blobs?: Array<{ digest: string, size: number }>
  participants: Array<{ agent: string, role: string, blobs?: number[] }>
}

/**
 * `staccato transfer show` for an image distribution: the registry egress,
 * then each destination's blobs, done over total:
 *
 *   registry:    3.0 MiB read from the registry (1.00 × the image)
 *   blobs:
 *     d1  sha256:4f2a9c01…  1.0 MiB/1.0 MiB
 */
export function imageLines (image: { registryBytes?: number, blobs: Array<{ digest: string, size: number }> }, swarm: ImageSwarm | undefined): string {
  const total = image.blobs.reduce((n, b) => n + b.size, 0)
  let text = ''
  if (image.registryBytes !== undefined) {
    text += `${'registry:'.padEnd(13)}${formatBytes(image.registryBytes)} read from the registry (${total > 0 ? (image.registryBytes / total).toFixed(2) : '0.00'} × the image)\n`
  }
  const blobs = swarm?.blobs ?? image.blobs
  const rows: string[] = []
  for (const p of swarm?.participants ?? []) {
    if (p.role !== 'destination' || p.blobs === undefined) continue
    for (const [i, b] of blobs.entries()) rows.push(`  ${p.agent}  ${b.digest.slice(0, 19)}…  ${formatBytes(p.blobs[i] ?? 0)}/${formatBytes(b.size)}\n`)
  }
  if (rows.length > 0) text += 'blobs:\n' + rows.join('')
  return text
}
