import pg from 'pg'
import { CHANGES_CHANNEL, EVENTS_CHANNEL } from './store-pg-schema.ts'

/** Between attempts to reopen the NOTIFY listener once its connection is lost: the leader lease polls as often (leader-pg.ts). */
const RETRY_MS = 1000

/** What a PostgreSQL store hears on its listener connection. */
export interface ListenerHandlers {
  /** Some process committed events up to this seq (EVENTS_CHANNEL). */
  events: (seq: number) => void
  /** A watched aux record or a token changed (CHANGES_CHANNEL): `a<aux key>`, `t<token key>`, or `a*` / `t*` for all. */
  changed: (payload: string) => void
  /** The connection was lost and is back: what was notified meanwhile never arrived. */
  reconnected: () => Promise<void>
}

/**
 * The store's LISTEN connection, apart from its pool: a lost connection
 * (the server restarted or was killed) is reopened every RETRY_MS until
 * close(), and then everything is announced as changed.
 */
export class PgListener {
  readonly #url: string
  readonly #on: ListenerHandlers
  #client: pg.Client | undefined
  #retry: NodeJS.Timeout | undefined
  #closed = false

  constructor (url: string, handlers: ListenerHandlers) {
    this.#url = url
    this.#on = handlers
  }

  async start (): Promise<void> {
    const client = new pg.Client({ connectionString: this.#url, keepAlive: true })
    // 'end' follows 'error'.
    client.on('error', () => {})
    client.on('end', () => { if (this.#client === client) this.#restart() })
    client.on('notification', msg => {
      if (this.#closed) return
      if (msg.channel === CHANGES_CHANNEL) this.#on.changed(msg.payload ?? '')
      else this.#on.events(Number(msg.payload))
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${EVENTS_CHANNEL}; LISTEN ${CHANGES_CHANNEL}`)
    } catch (err) {
      await client.end().catch(() => {})
      throw err
    }
    this.#client = client
  }

  /** Only wake-ups travel here: a failed end loses nothing. */
  async close (): Promise<void> {
    this.#closed = true
    clearTimeout(this.#retry)
    await this.#client?.end().catch(() => {})
  }

  #restart (): void {
    this.#client = undefined
    if (this.#closed || this.#retry !== undefined) return
    this.#retry = setTimeout(() => {
      this.#retry = undefined
      if (this.#closed) return
      this.start().then(async () => {
        await this.#on.reconnected()
        this.#on.changed('a*')
        this.#on.changed('t*')
      }).catch(() => {
        if (this.#client !== undefined) return
        this.#restart()
      })
    }, RETRY_MS)
  }
}
