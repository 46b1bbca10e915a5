import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdir, symlink, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import { TestMesh } from '../helpers/mesh.ts'
import { CHROMIUM, browserAvailable, requireBrowser } from '../helpers/browser.ts'

/** How long a page action (a click, a focus) may wait for its element, far above any figure seen under load. */
const ACTION_WAIT = 120_000

const MiB = 1024 * 1024
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname
// Generous: agents start slowly on a loaded 2-core machine; every wait ends as soon as its condition holds.
const WAIT = 120_000

/**
 * The dashboard in a real chromium against a real coordinator and agents:
 * every check is what a user sees on the page, driven through the page.
 */
describe.skipIf(!browserAvailable())('the dashboard in a browser', () => {
  let mesh: TestMesh
  let browser: Browser
  let page: Page
  const problems: string[] = []

  beforeAll(async () => {
    requireBrowser()
    await mkdir(ARTIFACTS, { recursive: true })
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([
      mesh.startAgent('store-1'),
      mesh.startAgent('fast-1'),
      // Slow enough that a transfer to it is still running when the test cancels it.
      mesh.startAgent('slow-1', ['--max-download-rate', '1MiB'])
    ])
    // CI runs as root, where chromium's sandbox cannot start; containers often have a small /dev/shm.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
    page = await browser.newPage({ viewport: { width: 1200, height: 700 } })
    // Every action waits as long as the waits do: playwright's 30 s default ran out at load 25.
    page.setDefaultTimeout(ACTION_WAIT)
    // A script or style the CSP refused, or an error in the page, shows here.
    // Failed requests are checked by URL below, not by the console's line without one.
    page.on('console', msg => { if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(msg.text()) })
    page.on('response', res => { if (res.status() >= 400) problems.push(`${res.status()} ${res.request().method()} ${new URL(res.url()).pathname}`) })
    page.on('pageerror', err => { problems.push(err.message) })
  })
  afterAll(async () => {
    await browser?.close()
    await mesh?.stop()
  })

  const row = (id: string): string => `tr[data-transfer="${id}"]`
  let canceledId = ''
  const facts = (): ReturnType<Page['locator']> => page.locator('.facts [data-state]')
  // The page's content only, without the empty viewport below it.
  const shot = async (name: string): Promise<void> => { await page.locator('#app').screenshot({ path: join(ARTIFACTS, `${name}.png`) }) }

  it('sends a browser at the API\'s address to the dashboard, refuses a wrong token and signs in with the right one', async () => {
    await page.goto(`${mesh.ready.apiUrl}/`)
    expect(new URL(page.url()).pathname).toBe('/ui')
    await page.fill('#token', 'not-a-token')
    await page.click('button[type=submit]')
    await page.locator('.signin [role=alert]', { hasText: 'invalid token' }).waitFor({ timeout: WAIT })
    // By keyboard: Enter in the field submits the form.
    await page.fill('#token', mesh.ready.apiToken)
    await page.press('#token', 'Enter')
    await page.locator('h1', { hasText: 'Transfers' }).waitFor({ timeout: WAIT })
    // The first Tab reaches the skip link, which moves the focus to the content and leaves the route alone.
    await page.keyboard.press('Tab')
    expect(await page.locator('a.skip:focus').count()).toBe(1)
    await page.keyboard.press('Enter')
    await page.locator('main:focus').waitFor({ timeout: WAIT })
    expect(new URL(page.url()).hash).toBe('')
    expect(await page.evaluate(() => sessionStorage.getItem('staccato.token'))).toBe(mesh.ready.apiToken)
  })

  it('shows a transfer submitted elsewhere appear and run to 100 % and succeeded, live', async () => {
    await writeFile(join(mesh.volume('store-1'), 'big.bin'), randomBytes(48 * MiB))
    await page.locator('text=No transfers').waitFor({ timeout: WAIT })
    // Submitted after the page loaded: only the event stream can bring it in.
    const t = await mesh.submit('agent://store-1/vol/big.bin', 'agent://fast-1/vol/big.bin')
    await page.locator(`${row(t.id)} [data-state]`, { hasText: 'succeeded' }).waitFor({ timeout: WAIT })
    expect(await page.locator(`${row(t.id)} [data-percent]`).textContent()).toBe('100 %')
    expect(await page.locator(`${row(t.id)} progress`).getAttribute('value')).toBe('100')
    expect((await mesh.transfer(t.id)).state).toBe('succeeded')
    await shot('transfers')
  })

  it('submits through the form: the API\'s message for a bad URL, then a good one to its own page', async () => {
    await page.click('nav >> text=New transfer')
    const bad = { source: 'ftp//store-1/vol/big.bin', destination: 'agent://fast-1/vol/copy.bin' }
    const expected = (await mesh.api('POST', '/v1/transfers', bad)).body as { code: string, message: string }
    await page.fill('#source', bad.source)
    await page.fill('#destinations', bad.destination)
    await page.click('form.submit button[type=submit]')
    const error = page.locator('#submit-error')
    await error.waitFor({ timeout: WAIT })
    expect(await error.textContent()).toBe(`${expected.message} (${expected.code})`)
    await shot('submit-error')

    await writeFile(join(mesh.volume('store-1'), 'small.bin'), randomBytes(MiB))
    await page.fill('#source', 'agent://store-1/vol/small.bin')
    await page.fill('#destinations', 'agent://fast-1/vol/small.bin')
    await page.click('form.submit button[type=submit]')
    await page.waitForURL(/#\/transfers\/tr_/, { timeout: WAIT })
    const id = /tr_[0-9A-Z]+$/.exec(page.url())?.[0] as string
    await page.locator('.facts [data-state]', { hasText: 'succeeded' }).waitFor({ timeout: WAIT })
    await page.locator('.history li', { hasText: 'verifying → succeeded' }).waitFor({ timeout: WAIT })
    expect((await mesh.transfer(id)).state).toBe('succeeded')
    await shot('transfer')
  })

  it('submits a distribution through the form (one destination a line) and shows each destination', async () => {
    await page.click('nav >> text=New transfer')
    await page.fill('#source', 'agent://store-1/vol/small.bin')
    await page.fill('#destinations', 'agent://fast-1/vol/dist.bin\nagent://slow-1/vol/dist.bin')
    await page.click('form.submit button[type=submit]')
    await page.waitForURL(/#\/transfers\/tr_/, { timeout: WAIT })
    await page.locator('.facts [data-state]', { hasText: 'succeeded' }).waitFor({ timeout: WAIT })
    const rows = page.locator('table.destinations tbody tr')
    await mesh.until(async () => (await rows.locator('[data-state]').allTextContents()).join() === 'succeeded,succeeded', WAIT, 'both destinations succeeded')
    expect(await rows.locator('th').allTextContents()).toEqual(['agent://fast-1/vol/dist.bin', 'agent://slow-1/vol/dist.bin'])
    // Read back from the change feed, not only seen live: a reload shows the same history.
    await page.reload()
    await page.locator('.history li', { hasText: 'destination on slow-1: succeeded' }).waitFor({ timeout: WAIT })
    await shot('distribution')
  })

  it('cancels a running transfer from the list', async () => {
    await writeFile(join(mesh.volume('store-1'), 'slow.bin'), randomBytes(64 * MiB))
    const t = await mesh.submit('agent://store-1/vol/slow.bin', 'agent://slow-1/vol/slow.bin')
    canceledId = t.id
    await page.click('nav >> text=Transfers')
    await page.locator(`${row(t.id)} [data-state]`, { hasText: 'active' }).waitFor({ timeout: WAIT })
    // Its bar moves with the progress events before it is canceled.
    await mesh.until(async () => parseInt(await page.locator(`${row(t.id)} [data-percent]`).textContent() ?? '') > 0, WAIT, 'the bar to move')
    await shot('transfers-active')
    await page.click(`${row(t.id)} button:has-text("Cancel")`)
    await page.locator(`${row(t.id)} [data-state]`, { hasText: 'canceled' }).waitFor({ timeout: WAIT })
    expect((await mesh.transfer(t.id)).state).toBe('canceled')
    // The state filter asks the server for canceled ones only.
    await page.selectOption('.toolbar select', 'canceled')
    // The page's CSP forbids eval, so conditions are polled from here.
    await mesh.until(async () => {
      const rows = await page.locator('tbody tr').evaluateAll(trs => trs.map(tr => tr.getAttribute('data-transfer')))
      return rows.length === 1 && rows[0] === t.id
    }, WAIT, 'only the canceled transfer listed')
    await page.selectOption('.toolbar select', '')
    // Newest first: ids sort in creation order, and this one is the newest.
    await mesh.until(async () => (await page.locator('tbody tr').count()) === 4, WAIT, 'all four transfers listed')
    const ids = await page.locator('tbody tr').evaluateAll(trs => trs.map(tr => tr.getAttribute('data-transfer') ?? ''))
    expect(ids[0]).toBe(t.id)
    expect(ids).toEqual([...ids].sort().reverse())
  })

  it('retries the canceled transfer from its page, cancels the retry there and deletes it', async () => {
    await page.goto(`${mesh.ready.apiUrl}/ui#/transfers/${canceledId}`)
    await facts().filter({ hasText: 'canceled' }).waitFor({ timeout: WAIT })
    await page.click('button:has-text("Retry")')
    await page.waitForURL(url => /tr_[0-9A-Z]+$/.exec(url.hash)?.[0] !== canceledId, { timeout: WAIT })
    const retry = /tr_[0-9A-Z]+$/.exec(page.url())?.[0] as string
    expect(retry).not.toBe(canceledId)
    expect((await mesh.transfer(canceledId)).state).toBe('canceled')
    await page.locator('.facts code', { hasText: 'agent://slow-1/vol/slow.bin' }).waitFor({ timeout: WAIT })
    await page.click('button:has-text("Cancel")')
    await facts().filter({ hasText: 'canceled' }).waitFor({ timeout: WAIT })
    expect((await mesh.transfer(retry)).state).toBe('canceled')
    // Deleting asks twice.
    await page.click('button:has-text("Delete")')
    await page.click('button:has-text("Really delete")')
    await page.locator('h1', { hasText: 'Transfers' }).waitFor({ timeout: WAIT })
    expect((await mesh.api('GET', `/v1/transfers/${retry}`)).status).toBe(404)
  })

  it('filters the list on the server by text', async () => {
    await page.fill('form.filters input[name=q]', 'DIST.BIN')
    await page.press('form.filters input[name=q]', 'Enter')
    await mesh.until(async () => (await page.locator('tbody tr').count()) === 1, WAIT, 'only the distribution listed')
    expect(await page.locator('tbody tr .route').textContent()).toContain('2 destinations')
    await page.fill('form.filters input[name=q]', '')
    await page.press('form.filters input[name=q]', 'Enter')
    await mesh.until(async () => (await page.locator('tbody tr').count()) > 1, WAIT, 'every transfer listed again')
  })

  it('shows a tree\'s files: its counts, a dry run\'s plan, and each file with its state and why, filtered by state', async () => {
    const src = join(mesh.volume('store-1'), 'tree')
    const dst = join(mesh.volume('fast-1'), 'tree')
    await mkdir(join(src, 'sub'), { recursive: true })
    await mkdir(dst, { recursive: true })
    await writeFile(join(src, 'a.txt'), 'a')
    await writeFile(join(src, 'sub', 'b.txt'), 'bb')
    await symlink('a.txt', join(src, 'link'))
    await writeFile(join(dst, 'stale.txt'), 'stale')
    const tree = { source: 'agent://store-1/vol/tree/', destination: 'agent://fast-1/vol/tree/', deleteExtra: true }
    const dry = ((await mesh.api('POST', '/v1/transfers', { ...tree, dryRun: true })).body as { id: string }).id
    await page.goto(`${mesh.ready.apiUrl}/ui#/transfers/${dry}`)
    await facts().filter({ hasText: 'succeeded' }).waitFor({ timeout: WAIT })
    await page.locator('[data-files]', { hasText: '0 copied, 1 skipped, 0 failed of 3 (dry run: 2 would be copied, 1 would be deleted)' }).waitFor({ timeout: WAIT })
    const states = async (): Promise<string[][]> => await page.locator('table.files tbody tr').evaluateAll(rows => rows.map(r => [r.getAttribute('data-file') ?? '', r.querySelector('[data-file-state]')?.textContent ?? '']))
    await mesh.until(async () => (await states()).length === 4, WAIT, 'the four rows of the dry run')
    expect(await states()).toEqual([['a.txt', 'would-copy'], ['link', 'skipped'], ['stale.txt', 'would-delete'], ['sub/b.txt', 'would-copy']])
    expect(await page.locator('table.files tr[data-file="link"] td').last().textContent()).toContain('symbolic link')
    await page.selectOption('#file-state', 'would-delete')
    await mesh.until(async () => JSON.stringify(await states()) === JSON.stringify([['stale.txt', 'would-delete']]), WAIT, 'only the file that would be deleted')
    await shot('tree-dry-run')

    const real = ((await mesh.api('POST', '/v1/transfers', tree)).body as { id: string }).id
    await page.goto(`${mesh.ready.apiUrl}/ui#/transfers/${real}`)
    await facts().filter({ hasText: 'succeeded' }).waitFor({ timeout: WAIT })
    await page.locator('[data-files]', { hasText: '2 copied, 1 skipped, 0 failed of 3, 1 deleted' }).waitFor({ timeout: WAIT })
    await mesh.until(async () => (await states()).length === 4, WAIT, 'the four rows of the copy')
    expect(await states()).toEqual([['a.txt', 'done'], ['link', 'skipped'], ['stale.txt', 'deleted'], ['sub/b.txt', 'done']])
  })

  it('shows a distribution\'s piece map while it runs, then every piece everywhere and who served whom', async () => {
    // Six pieces of 4 MiB; slow-1 downloads at 1 MiB/s, so the swarm runs for a while.
    await writeFile(join(mesh.volume('store-1'), 'swarm.bin'), randomBytes(24 * MiB))
    const created = await mesh.api('POST', '/v1/transfers', { source: 'agent://store-1/vol/swarm.bin', destinations: ['agent://fast-1/vol/swarm.bin', 'agent://slow-1/vol/swarm.bin'] })
    const id = (created.body as { id: string }).id
    await page.goto(`${mesh.ready.apiUrl}/ui#/transfers/${id}`)
    const strip = (agent: string): ReturnType<Page['locator']> => page.locator(`table.piece-map tr[data-participant="${agent}"] canvas`)
    await strip('slow-1').waitFor({ timeout: WAIT })
    expect(await strip('slow-1').getAttribute('data-pieces')).toBe('6')
    expect(await strip('store-1').getAttribute('data-have')).toBe('6')
    await mesh.until(async () => {
      const running = (await facts().textContent()) === 'active'
      const have = Number(await strip('fast-1').getAttribute('data-have'))
      return running && have > 0
    }, WAIT, 'pieces arriving at fast-1 while the distribution runs')
    await shot('swarm')
    await facts().filter({ hasText: 'succeeded' }).waitFor({ timeout: WAIT })
    for (const agent of ['fast-1', 'slow-1']) await page.locator(`table.piece-map tr[data-participant="${agent}"] canvas[data-have="6"]`).waitFor({ timeout: WAIT })
    expect(await page.locator('table.served tbody tr').count()).toBeGreaterThan(0)
    expect(Number(await page.locator('[data-seed-uploaded]').getAttribute('data-seed-uploaded'))).toBeGreaterThan(0)
  })

  it('draws the throughput of the mesh and of one agent over the last hour', async () => {
    await page.click('nav >> text=Throughput')
    await page.locator('.chart canvas').first().waitFor({ timeout: WAIT })
    await mesh.until(async () => (await page.locator('[data-total="rx"]').textContent()) !== '0 B', WAIT, 'bytes received in the chart')
    await page.selectOption('.toolbar select', 'fast-1')
    await mesh.until(async () => (await page.locator('[data-total="rx"]').textContent()) !== '0 B', WAIT, 'bytes received by fast-1')
    await shot('throughput')
  })

  it('lets an admin create a token, shown once, and revoke it', async () => {
    await page.click('nav >> text=Tokens')
    await page.selectOption('form.token-form select[name=role]', 'operator')
    await page.fill('form.token-form input[name=name]', 'made-in-the-dashboard')
    await page.click('form.token-form button[type=submit]')
    const secret = (await page.locator('#new-token code').textContent()) ?? ''
    expect(secret.length).toBeGreaterThan(20)
    const row = page.locator('table.tokens tbody tr', { hasText: 'made-in-the-dashboard' })
    await row.locator('[data-token-state]', { hasText: 'valid' }).waitFor({ timeout: WAIT })
    expect((await mesh.api('GET', '/v1/whoami', undefined, { authorization: `Bearer ${secret}` })).body).toMatchObject({ role: 'operator', tenant: 'default' })
    await row.locator('button:has-text("Revoke")').click()
    await row.locator('[data-token-state]', { hasText: 'revoked' }).waitFor({ timeout: WAIT })
    expect((await mesh.api('GET', '/v1/whoami', undefined, { authorization: `Bearer ${secret}` })).status).toBe(401)
    await shot('tokens')
  })

  it('opens signed in from the address npm start prints, and takes the token out of the address bar', async () => {
    const context = await browser.newContext()
    try {
      const tab = await context.newPage()
      // Every action waits as long as the waits do: playwright's 30 s default ran out at load 25.
      tab.setDefaultTimeout(ACTION_WAIT)
      await tab.goto(`${mesh.ready.apiUrl}/ui#token=${encodeURIComponent(mesh.ready.apiToken)}`)
      await tab.locator('h1', { hasText: 'Transfers' }).waitFor({ timeout: WAIT })
      expect(tab.url()).not.toContain('token')
      expect(await tab.evaluate(() => sessionStorage.getItem('staccato.token'))).toBe(mesh.ready.apiToken)
    } finally {
      await context.close()
    }
  })

  it('shows the agents, and one going offline when its process is killed', async () => {
    await page.click('nav >> text=Agents')
    const status = (name: string): string => `tr[data-agent="${name}"] [data-status]`
    for (const name of ['store-1', 'fast-1', 'slow-1']) await page.locator(status(name), { hasText: 'online' }).waitFor({ timeout: WAIT })
    // Free space comes with the heartbeats; the rate columns are there for every agent (a dash when idle).
    await page.locator('tr[data-agent="store-1"] [data-volume="vol"] [data-free]', { hasText: /free$/ }).waitFor({ timeout: WAIT })
    expect(await page.locator('tr[data-agent="store-1"] [data-rx]').count()).toBe(1)
    await shot('agents')
    await mesh.kill('slow-1')
    await page.locator(status('slow-1'), { hasText: 'offline' }).waitFor({ timeout: WAIT })
    expect(await page.locator(status('fast-1')).textContent()).toBe('online')
  })

  it('shows a reader what its token may not do, and signs it out when the token is revoked', async () => {
    const created = await mesh.api('POST', '/v1/tokens', { role: 'reader', tenant: 'default', name: 'dashboard-test' })
    const { token, id } = created.body as { token: string, id: string }
    // A tab of its own: session storage is per tab.
    const context = await browser.newContext()
    try {
      const reader = await context.newPage()
      // Every action waits as long as the waits do: playwright's 30 s default ran out at load 25.
      reader.setDefaultTimeout(ACTION_WAIT)
      await reader.goto(`${mesh.ready.apiUrl}/ui`)
      await reader.fill('#token', token)
      await reader.press('#token', 'Enter')
      await reader.locator('tbody tr').first().waitFor({ timeout: WAIT })
      // A reader sees, and is offered nothing it may not do.
      expect(await reader.locator('main button:has-text("Cancel"), main button:has-text("Delete"), main button:has-text("Retry")').count()).toBe(0)
      expect(await reader.locator('a:has-text("New transfer"), nav a:has-text("Tokens")').count()).toBe(0)
      await reader.click('nav >> text=Agents')
      await reader.locator('[role=alert]', { hasText: 'a reader token may not GET /v1/agents (needs admin)' }).waitFor({ timeout: WAIT })
      expect((await mesh.api('DELETE', `/v1/tokens/${id}`)).status).toBe(204)
      // The next request signs the reader out: following a link (by keyboard: the page re-renders into the sign-in form as the
      // link is followed, which a mouse click waits out poorly), or, on a slow machine, the Agents page's own refresh before that.
      const signedOut = reader.locator('.signin [role=alert]', { hasText: 'token revoked' })
      const follow = reader.focus('nav a[href="#/transfers"]').then(async () => { await reader.keyboard.press('Enter') })
      follow.catch(() => {}) // gone with the nav when the refresh came first
      await Promise.race([follow, signedOut.waitFor({ timeout: WAIT })])
      await signedOut.waitFor({ timeout: WAIT })
      expect(await reader.evaluate(() => sessionStorage.getItem('staccato.token'))).toBeNull()
    } finally {
      await context.close()
    }
  })

  it('is readable on a phone and in dark mode, and signs out', async () => {
    await page.emulateMedia({ colorScheme: 'dark' })
    await page.setViewportSize({ width: 390, height: 800 })
    await page.click('nav >> text=Transfers')
    await page.locator('h1', { hasText: 'Transfers' }).waitFor({ timeout: WAIT })
    // The table scrolls inside its frame; the page itself does not get wider than the phone.
    expect(await page.locator('html').evaluate(e => e.scrollWidth)).toBeLessThanOrEqual(390)
    const background = await page.locator('body').evaluate(e => e.ownerDocument.defaultView?.getComputedStyle(e).backgroundColor)
    expect(background).toBe('rgb(15, 19, 23)')
    await shot('phone-dark')
    await page.click('text=Sign out')
    await page.locator('#token').waitFor({ timeout: WAIT })
    expect(await page.evaluate(() => sessionStorage.getItem('staccato.token'))).toBeNull()
    // Only the two refusals the tests asked for: the wrong token, the bad URL.
    expect(problems).toEqual(['401 GET /v1/transfers', '400 POST /v1/transfers'])
  })
})
