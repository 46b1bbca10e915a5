import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdir, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import { TestMesh } from '../helpers/mesh.ts'
import { CHROMIUM, browserAvailable, requireBrowser } from '../helpers/browser.ts'

const MiB = 1024 * 1024
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname
// Generous: agents start slowly on a loaded 2-core machine; every wait ends as soon as its condition holds.
const WAIT = 60_000

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

  it('shows the agents, and one going offline when its process is killed', async () => {
    await page.click('nav >> text=Agents')
    const status = (name: string): string => `tr[data-agent="${name}"] [data-status]`
    for (const name of ['store-1', 'fast-1', 'slow-1']) await page.locator(status(name), { hasText: 'online' }).waitFor({ timeout: WAIT })
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
      await reader.goto(`${mesh.ready.apiUrl}/ui`)
      await reader.fill('#token', token)
      await reader.press('#token', 'Enter')
      await reader.locator('tbody tr').first().waitFor({ timeout: WAIT })
      await reader.click('nav >> text=Agents')
      await reader.locator('[role=alert]', { hasText: 'a reader token may not GET /v1/agents (needs admin)' }).waitFor({ timeout: WAIT })
      expect((await mesh.api('DELETE', `/v1/tokens/${id}`)).status).toBe(204)
      // By keyboard: the page re-renders into the sign-in form as the link is followed, which a mouse click waits out poorly.
      await reader.focus('nav a[href="#/transfers"]')
      await reader.keyboard.press('Enter')
      await reader.locator('.signin [role=alert]', { hasText: 'token revoked' }).waitFor({ timeout: WAIT })
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
