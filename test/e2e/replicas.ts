import type { ChildProcess } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { spawnStaccato, waitForJson } from '../../cli/index.ts'
import type { ReadyInfo } from '../../cli/index.ts'

/** Coordinator replicas and agents as processes on one PostgreSQL, for the e2e tests. */

export interface Replica { child: ChildProcess, ready: ReadyInfo, dir: string }
export interface Change { seq: number, id: string, topic: string, data: Record<string, unknown> }

/** Bounded polling of a condition that other processes make true. */
export async function until<T> (what: string, get: () => Promise<T | undefined>, tries = 1200): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await get().catch(() => undefined)
    if (value !== undefined) return value
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`gave up waiting: ${what}`)
}

export async function startReplica (base: string, url: string, n: number, opts: { token: string, join: string, extra?: string[] }): Promise<Replica> {
  const dir = join(base, `coordinator-${n}`)
  await mkdir(dir, { recursive: true })
  const readyFile = join(dir, 'ready.json')
  const child = spawnStaccato([
    'coordinator', '--data-dir', dir, '--store', url, '--api-token', opts.token, '--join-token', opts.join,
    // Port 0: the kernel picks both ports at bind, so no other process can take them first (the ready file says which).
    // A replica here is never restarted on its old ports; a freePort() chosen one can be taken before the child binds it.
    '--api-port', '0', '--listen', '/ip4/127.0.0.1/tcp/0', '--ready-file', readyFile, ...opts.extra ?? []
  ], join(dir, 'coordinator.log'))
  return { child, ready: await waitForJson<ReadyInfo>(readyFile, child, 120_000, `coordinator ${n}`), dir }
}

export async function api (r: Replica, token: string, method: string, path: string, body?: string): Promise<{ status: number, body: unknown }> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }
  const res = await fetch(`${r.ready.apiUrl}${path}`, { method, body, headers })
  const text = await res.text()
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) as unknown }
}

/** The OS pid of the process whose lease session holds the leader lock: the coordinator's own query. */
export { leaseHolderPid as leaderPid } from '../../coordinator/index.ts'

/** The whole change feed of one replica. */
export async function feed (r: Replica, token: string): Promise<Change[]> {
  const items: Change[] = []
  for (let after = 0, pages = 0; pages < 100; pages++) {
    const page = (await api(r, token, 'GET', `/v1/changes?after=${after}&limit=1000`)).body as { items: Change[] }
    items.push(...page.items)
    if (page.items.length < 1000) break
    after = page.items[page.items.length - 1].seq
  }
  return items
}
