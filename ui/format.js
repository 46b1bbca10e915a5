const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function bytes (n) {
  if (n === undefined || n === null) return '?'
  let i = 0
  let v = n
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++ }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${UNITS[i]}`
}

export function rate (bytesPerSecond) {
  return bytesPerSecond > 0 ? `${bytes(bytesPerSecond)}/s` : '–'
}

export function duration (seconds) {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '–'
  const s = Math.round(seconds)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
}

/** Seconds left at the current rate, when both the total and a rate are known. */
export function eta (progress) {
  const { bytesDone, bytesTotal, rate: r } = progress
  if (bytesTotal === undefined || !(r > 0)) return undefined
  return Math.max(0, (bytesTotal - bytesDone) / r)
}

export function percent (progress, state) {
  if (state === 'succeeded') return 100
  const { bytesDone, bytesTotal } = progress
  if (bytesTotal === undefined || bytesTotal === 0) return undefined
  return Math.min(100, Math.floor((bytesDone / bytesTotal) * 100))
}

export function ago (iso, now = Date.now()) {
  const s = Math.max(0, (now - Date.parse(iso)) / 1000)
  if (s < 5) return 'just now'
  return `${duration(s)} ago`
}

export const TERMINAL = new Set(['succeeded', 'failed', 'canceled'])
export const STATES = ['queued', 'scheduled', 'active', 'verifying', 'succeeded', 'failed', 'canceled']
