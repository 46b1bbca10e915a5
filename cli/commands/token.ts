import type { Command } from 'commander'
import { addClientOptions, connect, printJson, table, usageError } from '../client.ts'
import type { ClientFlags } from '../client.ts'

// The coordinator's views, as the API sends them (type-only: the CLI loads none of the coordinator).
import type { ApiTokenView, JoinTokenView } from '../../coordinator/index.ts'

/** What both kinds of token show. */
type TokenView = ApiTokenView | JoinTokenView

type Flags = ClientFlags & { json?: boolean }

const ROLES = ['reader', 'operator', 'admin']

/** `staccato token …` (API tokens) and `staccato agent-token …` (join tokens): admin routes of the REST API. */
export function tokenCommands (program: Command): void {
  const token = program.command('token').description('create, list and revoke API tokens (needs an admin token)')

  addClientOptions(token.command('create')
    .description('create an API token; it is printed once, the coordinator keeps only its hash')
    .requiredOption('--role <role>', `required: one of ${ROLES.join(', ')}`)
    .requiredOption('--tenant <tenant>', "required: the tenant it acts for, e.g. team-a ('*': all tenants, admin only; an all-tenants admin's own transfers go to tenant 'default')")
    .option('--name <name>', 'a note for listings, e.g. who holds it')
    .option('--expires <duration>', 'e.g. 12h or 90d; never when absent'))
    .action(async (o: Flags & { role: string, tenant: string, name?: string, expires?: string }) => {
      if (!ROLES.includes(o.role)) throw usageError(`--role '${o.role}' must be one of ${ROLES.join(', ')}`)
      const client = await connect(o)
      const created = await client.request<ApiTokenView & { token: string }>('POST', '/v1/tokens', {
        body: { role: o.role, tenant: o.tenant, name: o.name, expiresIn: o.expires }
      })
      printSecret(o, created, `API token ${created.id} (${created.role}, tenant ${created.tenant}${until(created)})`)
    })

  addClientOptions(token.command('list').description('list API tokens (never their secrets)'))
    .action(async (o: Flags) => {
      const { items } = await (await connect(o)).request<{ items: ApiTokenView[] }>('GET', '/v1/tokens')
      if (o.json === true) { printJson({ items }); return }
      process.stdout.write(table([
        ['ID', 'ROLE', 'TENANT', 'NAME', 'SOURCE', 'EXPIRES', 'STATE'],
        ...items.map(t => [t.id, t.role, t.tenant, t.name ?? '-', t.source, t.expiresAt ?? 'never', state(t)])
      ]))
    })

  addClientOptions(token.command('revoke').description('revoke an API token at once').argument('<id>', 'token id (from token list)'))
    .action(async (id: string, o: Flags) => {
      await (await connect(o)).request('DELETE', `/v1/tokens/${encodeURIComponent(id)}`)
      if (o.json === true) printJson({ id, revoked: true })
      else process.stdout.write(`revoked ${id}\n`)
    })

  const join = program.command('agent-token').description('create, list and revoke join tokens that enroll agents (needs an admin token)')

  addClientOptions(join.command('create')
    .description('create a join token for `staccato agent --join-token`; printed once')
    .option('--expires <duration>', 'e.g. 1h; never when absent')
    .option('--single-use', 'spent by the first agent that enrolls with it')
    .option('--name <name>', 'a note for listings'))
    .action(async (o: Flags & { expires?: string, singleUse?: boolean, name?: string }) => {
      const client = await connect(o)
      const created = await client.request<JoinTokenView & { token: string }>('POST', '/v1/agent-tokens', {
        body: { name: o.name, expiresIn: o.expires, singleUse: o.singleUse === true }
      })
      printSecret(o, created, `join token ${created.id} (${created.singleUse ? 'single-use' : 'reusable'}${until(created)})`)
    })

  addClientOptions(join.command('list').description('list join tokens (never their secrets)'))
    .action(async (o: Flags) => {
      const { items } = await (await connect(o)).request<{ items: JoinTokenView[] }>('GET', '/v1/agent-tokens')
      if (o.json === true) { printJson({ items }); return }
      process.stdout.write(table([
        ['ID', 'NAME', 'SOURCE', 'USE', 'EXPIRES', 'STATE'],
        ...items.map(t => [t.id, t.name ?? '-', t.source, t.singleUse ? 'single' : 'many', t.expiresAt ?? 'never', t.usedAt !== undefined ? `used by ${t.usedBy?.agent ?? '?'}` : state(t)])
      ]))
    })

  addClientOptions(join.command('revoke').description('revoke a join token (agents already enrolled stay enrolled)').argument('<id>', 'join token id'))
    .action(async (id: string, o: Flags) => {
      await (await connect(o)).request('DELETE', `/v1/agent-tokens/${encodeURIComponent(id)}`)
      if (o.json === true) printJson({ id, revoked: true })
      else process.stdout.write(`revoked ${id}\n`)
    })
}

/** The secret alone on stdout, so that `$(staccato token create …)` captures just it; the description on stderr. */
function printSecret (o: Flags, created: TokenView & { token: string }, what: string): void {
  if (o.json === true) { printJson(created); return }
  process.stdout.write(`${created.token}\n`)
  process.stderr.write(`${what}: shown only now, the coordinator keeps only its hash\n`)
}

function until (t: TokenView): string {
  return t.expiresAt !== undefined ? `, expires ${t.expiresAt}` : ''
}

function state (t: TokenView): string {
  if (t.revokedAt !== undefined) return `revoked ${t.revokedAt}`
  if (t.expiresAt !== undefined && Date.parse(t.expiresAt) <= Date.now()) return 'expired'
  return 'active'
}
