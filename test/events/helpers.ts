import { createHmac, timingSafeEqual } from 'node:crypto'
import { createServer, request } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { InjectOptions } from 'fastify'
import { buildApi } from '../../coordinator/api/index.ts'
import type { ApiOptions } from '../../coordinator/api/index.ts'
import { EventServices } from '../../coordinator/events/index.ts'
import type { EventsConfigInput } from '../../coordinator/events/index.ts'
import type { StoreEvent } from '../../coordinator/model.ts'
import type { Clock } from '../../coordinator/clock.ts'
import { TOKEN, agent, tempStore } from '../coordinator/helpers.ts'

export { TOKEN }

/** A store, event services with the given configuration, and an API over them; `inject` adds a bearer token. */
export async function eventsApi (opts: { tokens?: ApiOptions['tokens'], events?: EventsConfigInput, start?: boolean, agents?: string[], clock?: Clock } = {}) {
  const h = await tempStore()
  const events = new EventServices(h.store, opts.events ?? {}, undefined, opts.clock)
  await events.open()
  for (const name of opts.agents ?? []) await h.store.putAgent(agent(name))
  if (opts.start === true) events.start()
  const app = buildApi({ store: h.store, tokens: opts.tokens ?? [TOKEN], events })
  await app.ready()
  return {
    app,
    store: h.store,
    events,
    dir: h.dir,
    inject (req: InjectOptions & { token?: string }) {
      const { token = TOKEN, ...rest } = req
      return app.inject({ ...rest, headers: { authorization: `Bearer ${token}`, ...rest.headers } })
    },
    async cleanup () {
      await app.close()
      await events.close()
      await h.cleanup()
    }
  }
}

export interface Delivery {
  id: string
  timestamp: number
  body: string
  /** The signature checked out against the receiver's secret, with the receiver's own HMAC code. */
  verified: boolean
  event: StoreEvent
  /** What the receiver answered. */
  status: number
}

export type ReceiverMode = 'ok' | 'fail' | 'gone' | 'hang' | { status: number, headers?: Record<string, string> }

/**
 * A webhook receiver on loopback that checks Standard Webhooks signatures
 * itself (HMAC-SHA256 over `${id}.${timestamp}.${body}` with the base64 key
 * after `whsec_`), as a real receiver would, and records every request.
 */
export class Receiver {
  readonly deliveries: Delivery[] = []
  mode: ReceiverMode = 'ok'
  secret = ''
  #server: Server
  #hung: ServerResponse[] = []
  #waiters: Array<() => void> = []
  port = 0

  private constructor (server: Server) {
    this.#server = server
  }

  static async start (port = 0): Promise<Receiver> {
    const r: Receiver = new Receiver(createServer((req, res) => { r.#handle(req, res) }))
    await r.listen(port)
    return r
  }

  async listen (port = this.port): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(port, '127.0.0.1', () => { this.#server.off('error', reject); resolve() })
    })
    this.port = (this.#server.address() as AddressInfo).port
  }

  get url (): string { return `http://127.0.0.1:${this.port}/hook` }

  #handle (req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const id = String(req.headers['webhook-id'])
      const timestamp = Number(req.headers['webhook-timestamp'])
      const verified = checkSignature(this.secret, id, timestamp, body, String(req.headers['webhook-signature']))
      const mode = this.mode
      const status = mode === 'ok' ? 204 : mode === 'fail' ? 503 : mode === 'gone' ? 410 : mode === 'hang' ? 0 : mode.status
      this.deliveries.push({ id, timestamp, body, verified, event: (JSON.parse(body) as { data: StoreEvent }).data, status })
      for (const wake of this.#waiters.splice(0)) wake()
      if (mode === 'hang') {
        this.#hung.push(res)
        return
      }
      res.writeHead(status, typeof mode === 'object' ? mode.headers : undefined).end()
    })
  }

  /** Waits until `check` holds for the deliveries so far. */
  async until (check: (d: Delivery[]) => boolean, what = 'deliveries', timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!check(this.deliveries)) {
      if (Date.now() > deadline) throw new Error(`receiver: gave up waiting for ${what}; got ${JSON.stringify(this.deliveries.map(d => [d.id, d.event.topic, d.status]))}`)
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, 200)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  /** Stops listening, and drops open connections (hung requests included). */
  async close (): Promise<void> {
    for (const res of this.#hung.splice(0)) res.destroy()
    this.#server.closeAllConnections()
    await new Promise<void>(resolve => this.#server.close(() => resolve()))
  }
}

/** The receiver's own check, written from the Standard Webhooks specification rather than with the coordinator's code. */
export function checkSignature (secret: string, id: string, timestamp: number, body: string, header: string): boolean {
  if (!secret.startsWith('whsec_')) return false
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64')
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest()
  return header.split(' ').some(part => {
    const [version, sig] = part.split(',')
    if (version !== 'v1' || sig === undefined) return false
    const got = Buffer.from(sig, 'base64')
    return got.length === expected.length && timingSafeEqual(got, expected)
  })
}

export interface SseMessage { id?: string, event?: string, data?: string, comment?: string }

/**
 * A minimal SSE client over node:http: parses messages as the EventSource
 * specification does (fields up to a blank line; `:` lines are comments).
 */
export class SseClient {
  readonly messages: SseMessage[] = []
  status = 0
  #req?: ReturnType<typeof request>
  #buffer = ''
  #current: SseMessage = {}
  #waiters: Array<() => void> = []
  #ended = false

  static async open (url: string, headers: Record<string, string>): Promise<SseClient> {
    const c = new SseClient()
    await new Promise<void>((resolve, reject) => {
      c.#req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, res => {
        c.status = res.statusCode ?? 0
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => c.#feed(chunk))
        res.on('end', () => { c.#ended = true; c.#wake() })
        res.on('error', () => { c.#ended = true; c.#wake() })
        resolve()
      })
      c.#req.on('error', err => { c.#ended = true; c.#wake(); reject(err) })
      c.#req.end()
    })
    return c
  }

  get ended (): boolean { return this.#ended }

  /** The events (messages with data) received so far. */
  events (): StoreEvent[] {
    return this.messages.filter(m => m.data !== undefined && m.event === undefined).map(m => JSON.parse(m.data as string) as StoreEvent)
  }

  /** The id of the last message that had one: what an EventSource sends as Last-Event-ID. */
  lastEventId (): string | undefined {
    return this.messages.filter(m => m.id !== undefined).at(-1)?.id
  }

  async until (check: (c: SseClient) => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!check(this)) {
      if (this.#ended) throw new Error(`SSE stream ended while waiting for ${what}`)
      if (Date.now() > deadline) throw new Error(`SSE: gave up waiting for ${what}; got ${this.messages.length} messages`)
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, 100)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  close (): void {
    this.#req?.destroy()
  }

  #feed (chunk: string): void {
    this.#buffer += chunk
    let nl: number
    while ((nl = this.#buffer.indexOf('\n')) >= 0) {
      const line = this.#buffer.slice(0, nl).replace(/\r$/, '')
      this.#buffer = this.#buffer.slice(nl + 1)
      if (line === '') {
        if (Object.keys(this.#current).length > 0) this.messages.push(this.#current)
        this.#current = {}
        continue
      }
      const colon = line.indexOf(':')
      if (colon === 0) {
        this.#current.comment = line.slice(1).trim()
        continue
      }
      const field = colon < 0 ? line : line.slice(0, colon)
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'data') this.#current.data = this.#current.data === undefined ? value : `${this.#current.data}\n${value}`
      else if (field === 'id' || field === 'event') this.#current[field] = value
    }
    this.#wake()
  }

  #wake (): void {
    for (const w of this.#waiters.splice(0)) w()
  }
}
