import { InvalidArgumentError, NotFoundError, Serial } from '../../mesh/index.ts'
import { createIdGenerator } from '../ids.ts'
import type { StoreEvent } from '../model.ts'
import type { TransferStore } from '../store.ts'
import { keys, range } from '../store-keys.ts'
import { ALL_TENANTS } from '../tokens.ts'
import type { Role } from '../tokens.ts'
import type { AddressPolicy } from '../../mesh/index.ts'
import { checkSecret, generateSecret } from './signing.ts'
import { compileTopics } from './topics.ts'
import type { TopicMatcher } from './topics.ts'
import { canSee } from './visibility.ts'
import type { Viewer } from './visibility.ts'

export interface WebhookRecord {
  id: string
  /** The creator's tenant (`*`: an admin of all tenants, who gets every tenant's events). */
  tenant: string
  /** The creator's role, which decides what it may see (see canSee). */
  role: Role
  url: string
  topics: string[]
  /** `whsec_…`; shown to the client once, when the webhook is created. */
  secret: string
  enabled: boolean
  /** Why deliveries stopped (e.g. the endpoint answered 410 Gone). */
  disabledReason?: string
  disabledAt?: string
  createdAt: string
}

export interface WebhookInput { url: string, topics: string[], secret?: string }

export const WEBHOOK_ID_PATTERN = '^wh_[0-9A-HJKMNP-TV-Z]{26}$'
// Enough for any real integration; bounds the work each event's fan-out does.
const MAX_PER_TENANT = 100

interface Entry { rec: WebhookRecord, matches: TopicMatcher }

/**
 * Webhook subscriptions and the tenants' callback secrets, in the store's
 * aux ranges and in memory. Changes take effect inside the store's write
 * order, so a new webhook gets exactly the events written after it.
 */
export class WebhookRegistry {
  readonly #store: TransferStore
  readonly #policy: AddressPolicy
  readonly #hooks = new Map<string, Entry>()
  readonly #secrets = new Map<string, string>()
  readonly #creatingSecret = new Map<string, Promise<string>>()
  readonly #ids = createIdGenerator('wh_')
  readonly #reloads = new Serial()
  #reloadWanted = false
  /** Memory changes made by this process's own writes, counted (see #read). */
  #localChanges = 0
  readonly #onChanged = (key: string): void => {
    if (key === '*' || key.startsWith('w!') || key.startsWith('k!')) this.#reload()
  }

  constructor (store: TransferStore, policy: AddressPolicy) {
    this.#store = store
    this.#policy = policy
  }

  async load (): Promise<void> {
    await this.#read()
    this.#store.on('auxChanged', this.#onChanged)
  }

  /** Stops following changes made by other replicas. */
  close (): void {
    this.#store.off('auxChanged', this.#onChanged)
  }

  /**
   * Memory becomes what the store holds: every webhook and secret found, and
   * no other webhook. A read that a write of this process overtook (its
   * memory change landed meanwhile) is thrown away and made again, so that it
   * never undoes a newer change.
   */
  async #read (): Promise<void> {
    for (let tries = 0; ; tries++) {
      const before = this.#localChanges
      const hooks = await this.#store.readAux(range('w'))
      const secrets = await this.#store.readAux(range('k'))
      // Bounded: a process writing webhooks without pause still gets a read applied (and the next notification fixes it).
      if (before !== this.#localChanges && tries < 5) continue
      const found = new Set<string>()
      for (const [, value] of hooks) {
        const rec = value as WebhookRecord
        found.add(rec.id)
        this.#hooks.set(rec.id, { rec, matches: compileTopics(rec.topics) })
        this.#ids.seed(rec.id)
      }
      for (const id of this.#hooks.keys()) if (!found.has(id)) this.#hooks.delete(id)
      for (const [key, value] of secrets) this.#secrets.set(decodeURIComponent(key.slice(2)), value as string)
      return
    }
  }

  /**
   * Another replica (or this one) changed a webhook or a secret: read them
   * all again (at most a few hundred). Reads run one at a time, and a change
   * heard during a read gets a read after it, so memory ends as the database
   * is after the last change. Until then this replica's fan-out uses what it
   * had: a webhook created elsewhere gets events written here from the
   * moment this replica has heard of it.
   */
  #reload (): void {
    if (this.#reloadWanted) return
    this.#reloadWanted = true
    void this.#reloads.run(async () => {
      this.#reloadWanted = false
      await this.#read()
    }).catch(() => {
      // Unreachable database: the store sends '*' once its listener is back.
    })
  }

  async create (owner: { tenant: string, role: Role }, input: WebhookInput, now = Date.now()): Promise<WebhookRecord> {
    const { tenant, role } = owner
    const url = this.#policy.checkUrl(input.url)
    const matches = compileTopics(input.topics)
    if (input.topics.length === 0) throw new InvalidArgumentError('topics: at least one pattern (use # for every event)')
    const secret = input.secret !== undefined ? checkSecret(input.secret) : generateSecret()
    if (this.all().filter(r => r.tenant === tenant).length >= MAX_PER_TENANT) throw new InvalidArgumentError(`at most ${MAX_PER_TENANT} webhooks per tenant`)
    const rec: WebhookRecord = {
      id: this.#ids.next(now),
      tenant,
      role,
      url: url.href,
      topics: [...input.topics],
      secret,
      enabled: true,
      createdAt: new Date(now).toISOString()
    }
    await this.#store.writeAux([{ type: 'put', key: keys.webhook(rec.id), value: rec }], {
      sync: true,
      onWritten: () => { this.#localChanges++; this.#hooks.set(rec.id, { rec, matches }) }
    })
    return rec
  }

  get (id: string): WebhookRecord | undefined {
    return this.#hooks.get(id)?.rec
  }

  /** A webhook the viewer's tenant owns (any, for an admin of all tenants); another tenant's answers like a missing one. */
  visible (id: string, viewer: Viewer): WebhookRecord {
    const rec = this.get(id)
    if (rec === undefined || !ownedBy(rec, viewer)) throw new NotFoundError(`no webhook '${id}'`)
    return rec
  }

  list (viewer: Viewer): WebhookRecord[] {
    return [...this.#hooks.values()].map(e => e.rec).filter(r => ownedBy(r, viewer))
  }

  all (): WebhookRecord[] {
    return [...this.#hooks.values()].map(e => e.rec)
  }

  /** The enabled webhooks an event goes to: the owner may see it and a pattern matches. */
  * targets (event: StoreEvent): Iterable<WebhookRecord> {
    for (const { rec, matches } of this.#hooks.values()) {
      if (rec.enabled && canSee(rec, event) && matches(event.topic)) yield rec
    }
  }

  async remove (id: string): Promise<void> {
    await this.#store.writeAux([{ type: 'del', key: keys.webhook(id) }], { sync: true, onWritten: () => { this.#localChanges++; this.#hooks.delete(id) } })
  }

  async disable (id: string, reason: string, now = Date.now()): Promise<void> {
    const entry = this.#hooks.get(id)
    if (entry === undefined || !entry.rec.enabled) return
    const rec: WebhookRecord = { ...entry.rec, enabled: false, disabledReason: reason, disabledAt: new Date(now).toISOString() }
    await this.#store.writeAux([{ type: 'put', key: keys.webhook(id), value: rec }], {
      sync: true,
      onWritten: () => { this.#localChanges++; if (this.#hooks.has(id)) this.#hooks.set(id, { rec, matches: entry.matches }) }
    })
  }

  /** The secret that signs a tenant's per-transfer callbacks, made on first use. */
  async callbackSecret (tenant: string): Promise<string> {
    const known = this.#secrets.get(tenant)
    if (known !== undefined) return known
    let creating = this.#creatingSecret.get(tenant)
    if (creating === undefined) {
      const secret = generateSecret()
      creating = this.#store.writeAux([{ type: 'put', key: keys.tenantSecret(tenant), value: secret }], {
        sync: true,
        onWritten: () => { this.#localChanges++; this.#secrets.set(tenant, secret) }
      }).then(() => secret).finally(() => this.#creatingSecret.delete(tenant))
      this.#creatingSecret.set(tenant, creating)
    }
    return await creating
  }
}

function ownedBy (rec: WebhookRecord, viewer: Viewer): boolean {
  return viewer.tenant === ALL_TENANTS || rec.tenant === viewer.tenant
}
