/**
 * The lower bound on the time to give N peers a file of F bytes from one
 * server with upload u_s, when peers upload to each other (Kumar & Ross,
 * 2006): T_min = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)). Rates in bytes per
 * second; the answer in seconds.
 */
export function kumarRossBound (size: number, seedUpload: number, uploads: readonly number[], downloads: readonly number[]): number {
  const n = uploads.length
  if (n === 0) return 0
  let sumUp = 0
  for (const u of uploads) sumUp += u
  let minDown = Infinity
  for (const d of downloads) minDown = Math.min(minDown, d)
  return Math.max(size / seedUpload, size / minDown, (n * size) / (seedUpload + sumUp))
}
