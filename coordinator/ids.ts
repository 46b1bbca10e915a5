import { randomFillSync } from 'node:crypto'

/**
 * Sortable unique ids in the manner of ULID: a 10-character time component
 * (milliseconds, Crockford base32) and 16 random characters. Within one
 * millisecond, or when the clock steps back, the random part is incremented
 * instead of redrawn, so ids from one generator always sort in creation order
 * — the store relies on that for cursor pagination.
 */

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
const TIME_LEN = 10
const RANDOM_LEN = 16
const MAX_TIME = 2 ** 48 - 1

export const TRANSFER_ID_PREFIX = 'tr_'
/** A JSON-schema pattern for transfer ids (used by the API to reject malformed ids early). */
export const TRANSFER_ID_PATTERN = '^tr_[0-9A-HJKMNP-TV-Z]{26}$'
const TRANSFER_ID_RE = new RegExp(TRANSFER_ID_PATTERN)

export interface IdGenerator {
  next (now?: number): string
  /** Makes every later id sort after `id` (e.g. the newest id found on disk, in case the clock went back across a restart). */
  seed (id: string): void
}

export function createIdGenerator (prefix: string): IdGenerator {
  let lastTime = -1
  const digits = new Uint8Array(RANDOM_LEN)

  function redraw (): void {
    randomFillSync(digits)
    // 256 is a multiple of 32, so masking keeps the digits uniform.
    for (let i = 0; i < RANDOM_LEN; i++) digits[i] &= 31
  }

  function increment (): void {
    for (let i = RANDOM_LEN - 1; i >= 0; i--) {
      if (digits[i] < 31) { digits[i]++; return }
      digits[i] = 0
    }
    // All 80 bits overflowed: borrow the next millisecond rather than repeat an id.
    lastTime++
    redraw()
  }

  return {
    next (now = Date.now()) {
      if (!Number.isInteger(now) || now < 0 || now > MAX_TIME) throw new RangeError(`id time out of range: ${now}`)
      if (now > lastTime) {
        lastTime = now
        redraw()
      } else {
        increment()
      }
      let random = ''
      for (let i = 0; i < RANDOM_LEN; i++) random += ALPHABET[digits[i]]
      return prefix + encodeTime(lastTime) + random
    },
    seed (id) {
      if (!id.startsWith(prefix)) return
      const body = id.slice(prefix.length)
      if (body.length !== TIME_LEN + RANDOM_LEN) return
      const time = decodeTime(body.slice(0, TIME_LEN))
      if (time === undefined || time < lastTime) return
      const seeded = new Uint8Array(RANDOM_LEN)
      for (let i = 0; i < RANDOM_LEN; i++) {
        const d = ALPHABET.indexOf(body[TIME_LEN + i])
        if (d < 0) return
        seeded[i] = d
      }
      if (time === lastTime && compareDigits(seeded, digits) <= 0) return
      lastTime = time
      digits.set(seeded)
    }
  }
}

function compareDigits (a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return 0
}

function encodeTime (ms: number): string {
  let out = ''
  for (let i = 0; i < TIME_LEN; i++) {
    out = ALPHABET[ms % 32] + out
    ms = Math.floor(ms / 32)
  }
  return out
}

function decodeTime (text: string): number | undefined {
  let ms = 0
  for (const ch of text) {
    const d = ALPHABET.indexOf(ch)
    if (d < 0) return undefined
    ms = ms * 32 + d
  }
  return ms <= MAX_TIME ? ms : undefined
}

const transferIds = createIdGenerator(TRANSFER_ID_PREFIX)

export function newTransferId (now?: number): string {
  return transferIds.next(now)
}

export function isTransferId (text: string): boolean {
  return TRANSFER_ID_RE.test(text)
}

/** The creation time (epoch ms) encoded in an id made by createIdGenerator. */
export function idTime (id: string, prefix = TRANSFER_ID_PREFIX): number | undefined {
  if (!id.startsWith(prefix)) return undefined
  return decodeTime(id.slice(prefix.length, prefix.length + TIME_LEN))
}
