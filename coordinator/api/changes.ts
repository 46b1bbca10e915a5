import { Type } from 'typebox'
import { CursorExpiredError, compileTopics, readFeed, splitPatterns, viewerOf } from '../events/index.ts'
import type { EventServices, FeedPage } from '../events/index.ts'
import type { TransferStore } from '../store.ts'
import { errorResponses } from './schemas.ts'
import type { ApiInstance } from './types.ts'

export const EventSchema = Type.Object({
  seq: Type.Integer({ description: 'strictly increasing, not contiguous: it may skip ahead (after a crash, or where events were left out); the cursor of the feed and the SSE event id' }),
  id: Type.String({ description: 'unique and stable: the webhook-id of its deliveries' }),
  time: Type.String(),
  topic: Type.String({ description: 'dotted, e.g. transfer.<id>.state, transfer.<id>.progress, agent.<name>.online' }),
  tenant: Type.String({ description: '* for events about agents' }),
  data: Type.Record(Type.String(), Type.Unknown())
})

export const CursorExpiredBody = Type.Object({
  code: Type.Literal('cursor_expired'),
  message: Type.String(),
  oldest: Type.Integer({ description: 'seq of the oldest event kept' })
})

export const TopicsParam = Type.String({ maxLength: 4096, description: 'comma-separated patterns: * is one word, # any number of words (transfer.*.state,agent.#)' })

const ChangesQuery = Type.Object({
  after: Type.Optional(Type.Integer({ minimum: 0, description: 'the `next` of the previous page; 0 reads from the start' })),
  start: Type.Optional(Type.Literal('now', { description: 'without `after`: begin at the newest event, so that only what happens from now on is read (a follower that wants no history)' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  wait: Type.Optional(Type.Number({ minimum: 0, maximum: 60, description: 'seconds to wait for an event when there is none yet (long poll)' })),
  topics: Type.Optional(TopicsParam)
}, { additionalProperties: false })

const ChangesPage = Type.Object({
  items: Type.Array(EventSchema),
  next: Type.Integer({ description: 'pass as `after` for the next page' })
})

export interface ChangesRouteOptions { store: TransferStore, events: EventServices }

/**
 * GET /v1/changes: what happened after a cursor, for a client catching up
 * after being away (the Tracker's changes feed). With `wait` it is a long
 * poll: an empty answer comes only when nothing arrived in that time.
 */
export function changesRoutes (app: ApiInstance, opts: ChangesRouteOptions): void {
  const { store, events } = opts
  // Long polls end at once when the server closes rather than holding the close up for a minute.
  const closing = new AbortController()
  app.addHook('preClose', async () => { closing.abort() })

  app.get('/v1/changes', {
    config: { role: 'reader' },
    schema: { querystring: ChangesQuery, response: { 200: ChangesPage, 410: CursorExpiredBody, ...errorResponses } }
  }, async (req, reply) => {
    const matches = compileTopics(splitPatterns(req.query.topics))
    const viewer = viewerOf(req)
    const limit = req.query.limit ?? 100
    const deadline = Date.now() + (req.query.wait ?? 0) * 1000
    const gone = new AbortController()
    const onClose = (): void => gone.abort()
    reply.raw.once('close', onClose)
    const signal = AbortSignal.any([gone.signal, closing.signal])
    try {
      let after = req.query.after ?? (req.query.start === 'now' ? store.seq : 0)
      while (true) {
        const page: FeedPage = await readFeed(store, { after, limit, viewer, matches })
        const left = deadline - Date.now()
        if (page.items.length > 0 || !page.caughtUp || left <= 0 || signal.aborted) return { items: page.items, next: page.next }
        after = page.next
        if (!await events.bus.waitForNewer(after, left, signal)) return { items: [], next: after }
      }
    } catch (err) {
      if (err instanceof CursorExpiredError) return await reply.code(410).send({ code: 'cursor_expired', message: err.message, oldest: err.oldest })
      throw err
    } finally {
      reply.raw.off('close', onClose)
    }
  })
}
