import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { join } from 'node:path'
import { Level } from 'level'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import type { TransferRecord } from '../../coordinator/index.ts'
import { TestMesh } from '../helpers/mesh.ts'
import { CHROMIUM, browserAvailable, requireBrowser } from '../helpers/browser.ts'

/** How long a page action (a click, a focus) may wait for its element, far above any figure seen under load. */
const ACTION_WAIT = 120_000

const RECORDS = 100_000
const PAGE = 25
const WAIT = 120_000
const STATES = ['succeeded', 'failed', 'canceled'] as const
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

/** An id as the store makes them (tr_ + a ULID: 10 characters of time, 16 more), in creation order. */
function transferId (ms: number, n: number): string {
  const digits = (v: number, len: number): string => {
    let out = ''
    for (let i = 0; i < len; i++) { out = CROCKFORD[v % 32] + out; v = Math.floor(v / 32) }
    return out
  }
  return `tr_${digits(ms, 10)}${digits(n, 16)}`
}

/**
 * Writes finished transfer records straight into the coordinator's LevelDB
 * before it starts, as the store writes them (t!<id>, s!<state>!<id>): going
 * through create() would fsync 100,000 times.
 */
async function seed (dir: string): Promise<void> {
  const db = new Level<string, unknown>(dir, { valueEncoding: 'json' })
  await db.open()
  const start = Date.now() - RECORDS * 1000
  let batch = db.batch()
  for (let i = 0; i < RECORDS; i++) {
    const now = start + i * 1000
    const at = new Date(now).toISOString()
    const state = STATES[i % STATES.length]
    const rec: TransferRecord = {
      id: transferId(now, i),
      tenant: 'default',
      state,
      source: `agent://store-1/vol/file-${i}.bin`,
      destination: `agent://fast-1/vol/file-${i}.bin`,
      priority: 0,
      retries: 3,
      labels: { batch: String(i % 10) },
      agents: ['store-1', 'fast-1'],
      attempt: 1,
      progress: { bytesDone: 1024, bytesTotal: 1024, rate: 0, updatedAt: at },
      ...(state === 'failed' ? { lastError: { code: 'checksum_mismatch', message: `record ${i}`, retryable: false, attempt: 1, at } } : {}),
      createdAt: at,
      updatedAt: at,
      finishedAt: at
    }
    batch.put(`t!${rec.id}`, rec)
    batch.put(`s!${state}!${rec.id}`, '')
    if (batch.length >= 2000) { await batch.write(); batch = db.batch() }
  }
  await batch.write()
  await db.close()
}

/** The dashboard over a store of 100,000 transfers: each list request asks for one page, and its answer holds one page. */
describe.skipIf(!browserAvailable())('the dashboard with 100,000 transfers in the store', () => {
  let mesh: TestMesh
  let browser: Browser
  let page: Page
  const lists: Array<{ url: URL, items: number, bytes: number }> = []

  beforeAll(async () => {
    requireBrowser()
    mesh = await TestMesh.create()
    await seed(join(mesh.dir, 'coordinator', 'store'))
    await mesh.startCoordinator()
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
    page = await browser.newPage({ viewport: { width: 1200, height: 700 } })
    // Every action waits as long as the waits do: playwright's 30 s default ran out at load 25.
    page.setDefaultTimeout(ACTION_WAIT)
    page.on('response', res => {
      const url = new URL(res.url())
      if (url.pathname !== '/v1/transfers' || res.request().method() !== 'GET') return
      void res.body().then(body => { lists.push({ url, items: (JSON.parse(body.toString()) as { items: unknown[] }).items.length, bytes: body.length }) }).catch(() => {})
    })
  }, 300_000)
  afterAll(async () => {
    await browser?.close()
    await mesh?.stop()
  })

  it('shows the newest page, pages older and filters on the server, never asking for more than a page', async () => {
    await page.goto(`${mesh.ready.apiUrl}/ui#token=${encodeURIComponent(mesh.ready.apiToken)}`)
    await mesh.until(async () => (await page.locator('tbody tr').count()) === PAGE, WAIT, 'a page of transfers')
    const first = await page.locator('tbody tr').evaluateAll(trs => trs.map(tr => tr.getAttribute('data-transfer') ?? ''))
    expect(first).toEqual([...first].sort().reverse())
    await page.click('button:has-text("Older")')
    await mesh.until(async () => (await page.locator('tbody tr').first().getAttribute('data-transfer')) !== first[0], WAIT, 'the next page')
    const second = await page.locator('tbody tr').evaluateAll(trs => trs.map(tr => tr.getAttribute('data-transfer') ?? ''))
    expect(second).toHaveLength(PAGE)
    expect(second[0] < first[PAGE - 1]).toBe(true)
    // The oldest failed record, found by the text of its error: the server scans, the page gets one row.
    await page.fill('form.filters input[name=q]', 'record 1')
    await page.selectOption('.toolbar select', 'failed')
    await page.press('form.filters input[name=q]', 'Enter')
    await mesh.until(async () => (await page.locator('tbody tr').count()) > 0 && (await page.locator('tbody tr td code', { hasText: 'checksum_mismatch' }).count()) === (await page.locator('tbody tr').count()), WAIT, 'failed transfers whose error says "record 1"')
    await mesh.until(async () => lists.length >= 4, WAIT, 'the list answers recorded')
    for (const l of lists) {
      expect(Number(l.url.searchParams.get('limit')), String(l.url)).toBeLessThanOrEqual(PAGE)
      expect(l.items).toBeLessThanOrEqual(PAGE)
      // A page of 25 records is a few tens of kB, whatever the store holds.
      expect(l.bytes).toBeLessThan(64 * 1024)
    }
  })
})
