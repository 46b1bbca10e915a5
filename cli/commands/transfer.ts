import type { Command } from 'commander'
import { CliError, addClientOptions, connect, printJson, table, usageError } from '../client.ts'
import { CHECKSUM_MODES, MAX_STREAMS, OVERWRITE_MODES, SYNC_MODES, TREE_FILE_STATES } from '../../mesh/index.ts'
import type { ClientFlags } from '../client.ts'
import { FINAL_STATES, follow, rows } from '../follow.ts'
import type { Transfer } from '../follow.ts'
import { describe, formatBytes, progressDisplay } from '../progress.ts'
import { imageLines } from '../image-progress.ts'
import type { ImageSwarm } from '../image-progress.ts'

interface Flags extends ClientFlags { json?: boolean }

const DEFAULT_LIST_LIMIT = 100
// The API answers at most this many per page (ListTransfersQuery's maximum).
const PAGE_MAX = 1000
const ERROR_CELL = 60
// The coordinator's ids (coordinator/ids.ts): a ULID after tr_.
const TRANSFER_ID = /^tr_[0-9A-HJKMNP-TV-Z]{26}$/

export function transferCommand (program: Command): void {
  const transfer = program.command('transfer').description('submit, list, follow and cancel transfers (talks to the REST API)')

  addClientOptions(transfer.command('submit')
    .description('submit a transfer from SRC to DST; several DSTs make a distribution')
    .argument('<src>', 'source location, e.g. agent://store-1/images/a.qcow2')
    .argument('<dst...>', 'destination location(s)')
    .option('--wait', 'follow the transfer to its end, with progress; exit 1 if it fails')
    .option('--priority <n>', 'higher runs first (default 0)')
    .option('--retries <n>', 'retries after retryable errors')
    .option('--label <key=value>', 'label the transfer (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--checksum <mode|sha256:hex>', 'end-to-end checksum: sha256 (default), blake3 (cheaper, for bulk data) or none; or sha256:<hex>, the expected sha256 of the whole object')
    .option('--overwrite <mode>', `when the destination exists: ${OVERWRITE_MODES.join(', ')} (default always)`)
    .option('--streams <n>', `pull a large file's byte ranges on n data streams at once (1-${MAX_STREAMS}; default: the executing agent's --streams)`)
    .option('--sync <level>', `a tree (SRC ends with /): which files to copy when DST has them: ${SYNC_MODES.join(', ')} (default mtime)`)
    .option('--include <glob>', 'a tree: copy only files matching this glob (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--exclude <glob>', 'a tree: leave out files and directories matching this glob (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--delete-extra', 'a tree: a mirror; remove what DST holds and SRC does not, once every file is in place')
    .option('--dry-run', 'a tree: list what would be copied and deleted (staccato transfer files ID), change nothing')
    .option('--links <mode>', 'a tree: symbolic links are never followed; skip (the default) lists them as skipped, copy makes those whose target stays inside the tree')
    .option('--idempotency-key <key>', 'a retried submission with the same key returns the first transfer'))
    .action(async (src: string, dsts: string[], o: Flags & { wait?: boolean, priority?: string, retries?: string, label?: string[], checksum?: string, overwrite?: string, streams?: string, sync?: string, include?: string[], exclude?: string[], deleteExtra?: boolean, dryRun?: boolean, links?: string, idempotencyKey?: string }) => {
      const body: Record<string, unknown> = { source: src }
      if (dsts.length === 1) body.destination = dsts[0]
      else body.destinations = dsts
      if (o.priority !== undefined) body.priority = integer('--priority', o.priority, true)
      if (o.retries !== undefined) body.retries = integer('--retries', o.retries, false)
      if (o.label !== undefined) body.labels = Object.fromEntries(o.label.map(parseLabel))
      if (o.checksum !== undefined) Object.assign(body, parseChecksum(o.checksum))
      if (o.overwrite !== undefined) {
        if (!OVERWRITE_MODES.some(m => m === o.overwrite)) throw usageError(`--overwrite must be one of ${OVERWRITE_MODES.join(', ')}`)
        body.overwrite = o.overwrite
      }
      if (o.streams !== undefined) {
        const n = integer('--streams', o.streams, false)
        if (n < 1 || n > MAX_STREAMS) throw usageError(`--streams must be from 1 to ${MAX_STREAMS}`)
        body.streams = n
      }
      if (o.sync !== undefined) {
        if (!SYNC_MODES.some(m => m === o.sync)) throw usageError(`--sync must be one of ${SYNC_MODES.join(', ')}`)
        body.sync = o.sync
      }
      if (o.include !== undefined) body.include = o.include
      if (o.exclude !== undefined) body.exclude = o.exclude
      if (o.deleteExtra === true) body.deleteExtra = true
      if (o.dryRun === true) body.dryRun = true
      if (o.links !== undefined) {
        if (o.links !== 'skip' && o.links !== 'copy') throw usageError('--links must be skip or copy')
        body.links = o.links
      }
      const client = await connect(o)
      const created = await client.request<Transfer>('POST', '/v1/transfers', {
        body,
        headers: o.idempotencyKey !== undefined ? { 'idempotency-key': o.idempotencyKey } : undefined
      })
      if (o.wait !== true) {
        if (o.json === true) printJson(created)
        else process.stdout.write(`${created.id}  ${created.state}\n`)
        return
      }
      if (o.json !== true) process.stdout.write(`submitted ${created.id}\n`)
      const [done] = await follow(client, [created.id], o.json === true ? undefined : progressDisplay())
      finish(done, o.json === true)
    })

  addClientOptions(transfer.command('list')
    .description('list transfers, newest first')
    .option('--state <state>', 'only in this state (queued, scheduled, active, verifying, succeeded, failed, canceled)')
    .option('--agent <name>', 'only those involving this agent')
    .option('--label <key=value>', 'only those with this label')
    .option('--limit <n>', `at most this many (default ${DEFAULT_LIST_LIMIT})`)
    .option('--after <id>', 'the page after this transfer (the `next` a previous list printed)')
    .option('--oldest-first', 'oldest first instead'))
    .action(async (o: Flags & { state?: string, agent?: string, label?: string, limit?: string, after?: string, oldestFirst?: boolean }) => {
      const limit = o.limit !== undefined ? integer('--limit', o.limit, false) : DEFAULT_LIST_LIMIT
      if (limit < 1) throw usageError('--limit must be at least 1')
      if (o.after !== undefined) checkId(o.after, '--after')
      const label = o.label !== undefined ? parseLabel(o.label).join(':') : undefined
      const client = await connect(o)
      const items: Transfer[] = []
      let after = o.after
      let next: string | undefined
      while (items.length < limit) {
        const page = await client.request<{ items: Transfer[], next?: string }>('GET', '/v1/transfers', {
          query: { state: o.state, agent: o.agent, label, after, limit: Math.min(PAGE_MAX, limit - items.length), order: o.oldestFirst === true ? 'asc' : 'desc' }
        })
        items.push(...page.items)
        next = page.next
        if (page.next === undefined || page.items.length === 0) break
        after = page.next
      }
      if (o.json === true) { printJson(next !== undefined ? { items, next } : { items }); return }
      if (items.length === 0) { process.stdout.write('no transfers\n'); return }
      // An error column only when something failed: for everything else it would be an empty column.
      const errors = items.some(t => t.state === 'failed' && t.lastError !== undefined)
      process.stdout.write(table([
        ['ID', 'STATE', 'PROGRESS', 'SOURCE', 'DESTINATION', ...(errors ? ['ERROR'] : [])],
        ...items.map(t => [t.id, stateCell(t), progressCell(t), t.source, destinationCell(t), ...(errors ? [errorCell(t)] : [])])
      ]))
      if (next !== undefined) process.stdout.write(`more: --after ${next}\n`)
    })

  addClientOptions(transfer.command('show')
    .description('show one transfer')
    .argument('<id>', 'transfer id')
    .option('--follow', 'follow it to its end with progress; exit 1 if it fails'))
    .action(async (id: string, o: Flags & { follow?: boolean }) => {
      checkId(id)
      const client = await connect(o)
      const t = await client.request<Transfer>('GET', `/v1/transfers/${encodeURIComponent(id)}`)
      if (o.follow === true && !FINAL_STATES.has(t.state)) {
        if (o.json !== true) process.stdout.write(details(t))
        const [done] = await follow(client, [t.id], o.json === true ? undefined : progressDisplay())
        finish(done, o.json === true)
        return
      }
      if (o.json === true) printJson(t)
      else process.stdout.write(details(t))
      if (o.json !== true && t.manifest?.image !== undefined) {
        // The swarm view is kept for recent distributions only: without it the registry egress is still shown.
        const swarm = await client.request<ImageSwarm>('GET', `/v1/transfers/${encodeURIComponent(id)}/swarm`).catch(() => undefined)
        process.stdout.write(imageLines(t.manifest.image, swarm))
      }
      if (o.follow === true) finish(t, true)
    })

  addClientOptions(transfer.command('files')
    .description('list the files of a tree transfer: copied, skipped (with why), failed (with the error), deleted (a mirror), would-copy or would-delete (a dry run)')
    .argument('<id>', 'transfer id')
    .option('--state <state>', `only ${TREE_FILE_STATES.join(', ')}`))
    .action(async (id: string, o: Flags & { state?: string }) => {
      checkId(id)
      if (o.state !== undefined && !TREE_FILE_STATES.some(s => s === o.state)) throw usageError(`--state must be one of ${TREE_FILE_STATES.join(', ')}`)
      const client = await connect(o)
      let after: string | undefined
      let shown = 0
      // Page by page, printed as they come: a tree of 100,000 files is never held whole.
      for (let page = 0; page < Number.MAX_SAFE_INTEGER; page++) {
        const res = await client.request<{ items: TreeFile[], next?: string }>('GET', `/v1/transfers/${encodeURIComponent(id)}/files`, { query: { state: o.state, after, limit: PAGE_MAX } })
        for (const f of res.items) process.stdout.write(o.json === true ? `${JSON.stringify(f)}\n` : `${fileLine(f)}\n`)
        shown += res.items.length
        if (res.next === undefined || res.items.length === 0) break
        after = res.next
      }
      if (shown === 0 && o.json !== true) process.stdout.write('no files\n')
    })

  addClientOptions(transfer.command('cancel')
    .description('cancel a transfer that has not finished')
    .argument('<id>', 'transfer id'))
    .action(async (id: string, o: Flags) => {
      checkId(id)
      const client = await connect(o)
      const t = await client.request<Transfer>('POST', `/v1/transfers/${encodeURIComponent(id)}/cancel`)
      if (o.json === true) printJson(t)
      else process.stdout.write(`${t.id}  ${t.state}\n`)
    })

  addClientOptions(transfer.command('rm')
    .description('delete a transfer\'s record')
    .argument('<id>', 'transfer id'))
    .action(async (id: string, o: Flags) => {
      checkId(id)
      const client = await connect(o)
      await client.request('DELETE', `/v1/transfers/${encodeURIComponent(id)}`)
      if (o.json === true) printJson({ id, removed: true })
      else process.stdout.write(`${id}  removed\n`)
    })
}

interface TreeFile { path: string, state: string, size: number, reason?: string, error?: { code: string, message: string } }

/** `failed   4.0 KiB  a/b.txt  not_found: …`; a path's control characters (a newline) are shown escaped, one file per line. */
function fileLine (f: TreeFile): string {
  const why = f.error !== undefined ? `  ${f.error.code}: ${f.error.message}` : f.reason !== undefined ? `  (${f.reason})` : ''
  return `${f.state.padEnd(12)} ${formatBytes(f.size).padStart(10)}  ${JSON.stringify(f.path).slice(1, -1)}${why}`
}

/** Prints the outcome; a transfer that did not succeed ends the command with exit code 1. */
export function finish (t: Transfer, json: boolean): void {
  if (json) printJson(t)
  else if (t.state === 'succeeded') process.stdout.write(`${t.id}  succeeded${t.sha256 !== undefined ? `  sha256 ${t.sha256}` : ''}${t.blake3 !== undefined ? `  blake3 ${t.blake3}` : ''}\n`)
  if (t.state === 'failed') {
    const e = t.lastError
    throw new CliError(e?.code ?? 'failed', `transfer ${t.id} failed: ${e?.code ?? 'unknown'}: ${e?.message ?? 'no error recorded'}`, 1)
  }
  if (t.state === 'canceled') throw new CliError('canceled', `transfer ${t.id} was canceled`, 1)
}

function details (t: Transfer): string {
  const lines: Array<[string, string | undefined]> = [
    ['id', t.id],
    ['state', t.state],
    ['source', t.source],
    ['destination', t.destinations === undefined ? t.destination : undefined],
    ['waiting', waitingText(t)],
    ['progress', describe(t).replace(/^\S+\s+/, '')],
    ['attempt', `${t.attempt} (retries allowed: ${t.retries})`],
    ['priority', String(t.priority)],
    ['labels', Object.entries(t.labels).map(([k, v]) => `${k}=${v}`).join(', ') || undefined],
    ['executor', t.executor],
    ['checksum', t.checksumMode],
    ['overwrite', t.overwrite],
    ['streams', t.streams !== undefined ? String(t.streams) : undefined],
    ['sync', t.tree !== undefined ? treeText(t.tree) : undefined],
    ['sha256', t.sha256],
    ['blake3', t.blake3],
    ['error', t.lastError !== undefined ? `${t.lastError.code}: ${t.lastError.message}` : undefined],
    ['created', t.createdAt],
    ['started', t.startedAt],
    ['finished', t.finishedAt]
  ]
  let text = lines.filter(([, v]) => v !== undefined).map(([k, v]) => `${`${k}:`.padEnd(13)}${v}\n`).join('')
  if (t.destinations !== undefined) {
    text += 'destinations:\n' + rows(t).slice(1).map(r => `  ${r.id.trim()}  ${describe(r)}\n`).join('')
  }
  return text
}

/** `mtime, include *.jpg, exclude *.tmp`: a tree's sync level and globs. */
function treeText (tree: { sync?: string, include?: string[], exclude?: string[], deleteExtra?: boolean, dryRun?: boolean, links?: string }): string {
  const parts = [tree.sync ?? 'mtime']
  if (tree.include !== undefined) parts.push(`include ${tree.include.join(' ')}`)
  if (tree.exclude !== undefined) parts.push(`exclude ${tree.exclude.join(' ')}`)
  if (tree.deleteExtra === true) parts.push('delete extra')
  if (tree.dryRun === true) parts.push('dry run')
  if (tree.links === 'copy') parts.push('links copied')
  return parts.join(', ')
}

/** `agent compute-3 offline since 2026-…`: why a queued transfer has not started. */
function waitingText (t: Transfer): string | undefined {
  const w = t.waiting
  if (w === undefined) return undefined
  return w.reason === 'agent_offline' ? `agent ${w.agent} offline since ${w.since}` : `${w.reason} (${w.agent})`
}

function errorCell (t: Transfer): string {
  if (t.state !== 'failed' || t.lastError === undefined) return ''
  const text = `${t.lastError.code}: ${t.lastError.message}`
  return text.length > ERROR_CELL ? `${text.slice(0, ERROR_CELL - 1)}…` : text
}

/** Transfer ids as the coordinator makes them; anything else is refused here with a clear message, not the API's pattern. */
function checkId (id: string, flag?: string): void {
  if (!TRANSFER_ID.test(id)) throw usageError(`${flag !== undefined ? `${flag} ` : ''}'${id}' is not a transfer id (tr_ and 26 capital letters and digits, as transfer list prints them)`)
}

function stateCell (t: Transfer): string {
  return t.waiting !== undefined ? `${t.state} (${t.waiting.agent} offline)` : t.state
}

function progressCell (t: Transfer): string {
  const p = t.progress
  if (p.bytesTotal === undefined || p.bytesTotal === 0) return formatBytes(p.bytesDone)
  return `${Math.floor(100 * p.bytesDone / p.bytesTotal)}% of ${formatBytes(p.bytesTotal)}`
}

function destinationCell (t: Transfer): string {
  if (t.destinations === undefined) return t.destination
  return `${t.destinations.length} destinations (${t.destinations.map(d => d.agent).join(', ')})`
}

function integer (flag: string, text: string, signed: boolean): number {
  const n = Number(text)
  if (text.trim() === '' || !Number.isSafeInteger(n) || (!signed && n < 0)) throw usageError(`${flag} '${text}' must be a${signed ? 'n' : ' whole'} ${signed ? 'integer' : 'number'}`)
  return n
}

function parseLabel (text: string): [string, string] {
  const eq = text.indexOf('=')
  if (eq < 1) throw usageError(`--label '${text}' must look like key=value`)
  return [text.slice(0, eq), text.slice(eq + 1)]
}

/** A mode name, or a pinned digest (which is a sha256, so the mode stays sha256). */
function parseChecksum (text: string): { checksumMode: string } | { checksum: { algorithm: 'sha256', value: string } } {
  if (CHECKSUM_MODES.some(m => m === text)) return { checksumMode: text }
  const m = /^sha256:([0-9a-fA-F]{64})$/.exec(text)
  if (m === null) throw usageError(`--checksum '${text}' must be one of ${CHECKSUM_MODES.join(', ')}, or sha256:<64 hex digits>`)
  return { checksum: { algorithm: 'sha256', value: m[1].toLowerCase() } }
}
