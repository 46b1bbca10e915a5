import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { Type } from 'typebox'
import { StaccatoError } from '../../mesh/index.ts'
import { CursorExpiredError, canSee, checkCursor, compileTopics, splitPatterns, viewerOf } from '../events/index.ts'
import type { EventServices } from '../events/index.ts'
import type { StoreEvent } from '../model.ts'
import type { TransferStore } from '../store.ts'
import { CursorExpiredBody, TopicsParam } from './changes.ts'
import { errorResponses } from './schemas.ts'
import type { ApiInstance } from './types.ts'

const StreamQuery = Type.Object({
  topics: Type.Optional(TopicsParam),
  after: Type.Optional(Type.Integer({ minimum: 0, description: 'replay events after this seq first (Last-Event-ID takes precedence); default: only new events' }))
}, { additionalProperties: false })

const StreamHeaders = Type.Object({
  'last-event-id': Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'the id of the last event received: the stream resumes after it' }))
})

// Events read from the log per step while replaying.
const STEP = 500
// A reader this far behind is cut off; it resumes with Last-Event-ID rather than growing our memory.
const MAX_BUFFERED = 1024 * 1024
// What an EventSource waits before reconnecting, sent once at the start.
const RETRY_MS = 2000

export interface StreamRouteOptions { store: TransferStore, events: EventServices }

/**
 * GET /v1/events: Server-Sent Events. With Last-Event-ID (or `after`) it
 * first replays from the log, then goes live. The live subscription starts
 * before the replay, events arriving meanwhile are held, and every event
 * is sent only if its seq is above the last one sent, so the seam between
 * replay and live loses nothing and repeats nothing.
 */
export function eventStreamRoutes (app: ApiInstance, opts: StreamRouteOptions): void {
  const { store, events } = opts
  const open = new Set<ServerResponse>()
  app.addHook('preClose', async () => { for (const res of open) res.end() })

  app.get('/v1/events', {
    config: { role: 'reader' },
    schema: { querystring: StreamQuery, headers: StreamHeaders, response: { 410: CursorExpiredBody, ...errorResponses } }
  }, async (req, reply) => {
    const matches = compileTopics(splitPatterns(req.query.topics))
    const viewer = viewerOf(req)
    const resumeFrom = req.headers['last-event-id'] !== undefined ? Number(req.headers['last-event-id']) : req.query.after
    let last = resumeFrom ?? store.seq
    try {
      checkCursor(store, last)
    } catch (err) {
      if (err instanceof CursorExpiredError) return await reply.code(410).send({ code: 'cursor_expired', message: err.message, oldest: err.oldest })
      throw err
    }
    if (open.size >= events.config.stream.maxStreams) throw new StaccatoError('unavailable', 'too many open event streams; try again later', true)

    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Tells nginx not to buffer the stream.
      'x-accel-buffering': 'no'
    })
    res.write(`retry: ${RETRY_MS}\n\n`)
    open.add(res)

    /** The highest seq written with an `id:` line, so that a heartbeat can move the client's Last-Event-ID past hidden events. */
    let lastId = last
    let live = false
    let held: StoreEvent[] = []
    const send = (ev: StoreEvent): void => {
      if (ev.seq <= last || res.writableEnded) return
      last = ev.seq
      if (!canSee(viewer, ev) || !matches(ev.topic)) return
      res.write(`id: ${ev.seq}\ndata: ${JSON.stringify(ev)}\n\n`)
      lastId = ev.seq
      if (live && res.writableLength > MAX_BUFFERED) res.end()
    }
    const unsubscribe = events.bus.subscribe(ev => {
      if (live) send(ev)
      else held.push(ev)
    })
    const heartbeat = setInterval(() => {
      if (res.writableEnded) return
      // An id with no data updates the client's Last-Event-ID without firing an event.
      res.write(last > lastId ? `: ping\nid: ${last}\n\n` : ': ping\n\n')
      lastId = last
    }, events.config.stream.heartbeatMs)
    res.once('close', () => {
      clearInterval(heartbeat)
      unsubscribe()
      open.delete(res)
    })

    try {
      while (!res.writableEnded) {
        const batch = await store.readEvents(last, STEP)
        if (batch.length === 0) break
        if (batch[0].seq !== last + 1) checkCursor(store, last)
        for (const ev of batch) send(ev)
        if (res.writableLength > MAX_BUFFERED / 2 && !res.writableEnded) await Promise.race([once(res, 'drain'), once(res, 'close')])
      }
      live = true
      for (const ev of held) send(ev)
      held = []
    } catch (err) {
      const e = err instanceof StaccatoError ? err : new StaccatoError('internal', 'reading the event log failed', true)
      if (!(err instanceof StaccatoError)) req.log.error({ err }, 'event stream replay failed')
      if (!res.writableEnded) res.end(`event: error\ndata: ${JSON.stringify({ code: e.code, message: e.message, ...(err instanceof CursorExpiredError ? { oldest: err.oldest } : {}) })}\n\n`)
    }
    return reply
  })
}
