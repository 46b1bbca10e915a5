/* global sessionStorage, fetch, TextDecoderStream, setTimeout, clearTimeout, window, CustomEvent */
const KEY = 'staccato.token'

/** The token lives in session storage: gone when the tab closes, never in a cookie the browser would send by itself. */
export const session = {
  token: () => sessionStorage.getItem(KEY),
  signIn: token => sessionStorage.setItem(KEY, token),
  signOut: () => sessionStorage.removeItem(KEY)
}

const ROLES = ['reader', 'operator', 'admin']

/** Whether a token of `role` may do what needs `needed`: the API decides, this only hides buttons that would be refused. */
export function allows (role, needed) {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed)
}

export class ApiError extends Error {
  constructor (status, code, message, body) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.body = body
  }
}

function headers (extra = {}) {
  return { authorization: `Bearer ${session.token() ?? ''}`, ...extra }
}

/** A REST call with the session's token; an API error keeps the API's code and message for the page to show. */
export async function api (method, path, body, token) {
  // Signed out (a page's late refresh after Sign out, say): nothing to ask the API, and no 401 to provoke.
  if (token === undefined && session.token() === null) throw new ApiError(401, 'signed_out', 'signed out')
  const res = await fetch(path, {
    method,
    headers: { ...headers(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined
  })
  if (res.status === 204) return undefined
  const data = await res.json().catch(() => ({}))
  if (!res.ok) {
    const err = new ApiError(res.status, data.code ?? `http_${res.status}`, data.message ?? res.statusText, data)
    // A token revoked or expired while signed in: back to the sign-in form, with the reason.
    if (res.status === 401 && token === undefined) window.dispatchEvent(new CustomEvent('staccato:unauthorized', { detail: err.message }))
    throw err
  }
  return data
}

const FEED_PAGES = 20
const FEED_LIMIT = 1000

/**
 * The events matching `topics` from the change feed, oldest first. The feed
 * scans a bounded stretch of the log per request, so this pages on until a
 * request brings nothing new, at most FEED_PAGES requests; an expired start
 * goes on from the oldest event kept.
 */
export async function readFeed (topics) {
  const items = []
  let after = 0
  for (let i = 0; i < FEED_PAGES; i++) {
    let page
    try {
      page = await api('GET', `/v1/changes?after=${after}&limit=${FEED_LIMIT}&topics=${encodeURIComponent(topics)}`)
    } catch (err) {
      if (err instanceof ApiError && err.code === 'cursor_expired' && Number.isInteger(err.body?.oldest)) { after = err.body.oldest - 1; continue }
      throw err
    }
    items.push(...page.items)
    if (page.next === after) break
    after = page.next
  }
  return items
}

const RETRY_MIN_MS = 1000
const RETRY_MAX_MS = 30_000

/**
 * Follows GET /v1/events. EventSource cannot send an Authorization header, so
 * this reads the stream with fetch. It reconnects with Last-Event-ID after a
 * drop; `onOpen` runs on every (re)connection so a page can reload what it
 * shows, and an expired cursor (410) starts over from now. Ends when `signal`
 * aborts.
 */
export function followEvents (topics, { onEvent, onOpen, signal }) {
  let lastId
  let delay = RETRY_MIN_MS
  const wait = ms => new Promise(resolve => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
  })
  const run = async () => {
    while (!signal.aborted) {
      // Signed out: the stream ends here rather than ask again with no token.
      if (session.token() === null) return
      try {
        const res = await fetch(`/v1/events?topics=${encodeURIComponent(topics)}`, {
          headers: headers({ accept: 'text/event-stream', ...(lastId !== undefined ? { 'last-event-id': lastId } : {}) }),
          signal
        })
        if (res.status === 410) { lastId = undefined; continue }
        if (res.status === 401) {
          const body = await res.json().catch(() => ({}))
          window.dispatchEvent(new CustomEvent('staccato:unauthorized', { detail: body.message ?? 'the token is no longer valid' }))
          return
        }
        if (!res.ok || res.body === null) throw new Error(`event stream answered ${res.status}`)
        delay = RETRY_MIN_MS
        onOpen?.()
        await readStream(res.body, id => { lastId = id }, onEvent)
      } catch {
        if (signal.aborted) return
      }
      await wait(delay)
      delay = Math.min(delay * 2, RETRY_MAX_MS)
    }
  }
  void run()
}

async function readStream (body, setId, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  while (true) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += value
    let end
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      let data = ''
      let type = 'message'
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) setId(line.slice(4))
        else if (line.startsWith('data: ')) data += line.slice(6)
        else if (line.startsWith('event: ')) type = line.slice(7)
      }
      if (data !== '' && type === 'message') onEvent(JSON.parse(data))
    }
  }
}

/** Runs `fn` at most once per `ms`, the last call winning: a burst of events causes one reload. */
export function throttle (fn, ms) {
  let timer
  let pending = false
  return () => {
    if (timer !== undefined) { pending = true; return }
    fn()
    timer = setTimeout(function again () {
      timer = undefined
      if (pending) { pending = false; fn(); timer = setTimeout(again, ms) }
    }, ms)
  }
}
