import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdir, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import puppeteer from 'puppeteer-core'
import type { Browser, Page } from 'puppeteer-core'
import { TestMesh } from '../helpers/mesh.ts'
import { FIREFOX, firefoxAvailable, requireFirefox } from '../helpers/browser.ts'

/** How long a page action (a click, a focus) may wait for its element, far above any figure seen under load. */
const ACTION_WAIT = 120_000

const MiB = 1024 * 1024
const ARTIFACTS = new URL('../../test-artifacts/firefox/', import.meta.url).pathname
const WAIT = 120_000

/**
 * The same dashboard in Firefox (Debian's firefox-esr over WebDriver BiDi):
 * sign in, a transfer live to 100 %, a distribution's piece map while it runs.
 * Conditions are read from Node and polled: the page's CSP forbids eval.
 */
describe.skipIf(!firefoxAvailable())('the dashboard in Firefox', () => {
  let mesh: TestMesh
  let browser: Browser
  let page: Page
  const problems: string[] = []

  beforeAll(async () => {
    requireFirefox()
    await mkdir(ARTIFACTS, { recursive: true })
    mesh = await TestMesh.create()
    await mesh.startCoordinator()
    await Promise.all([mesh.startAgent('store-1'), mesh.startAgent('fast-1'), mesh.startAgent('slow-1', ['--max-download-rate', '1MiB'])])
    browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true })
    page = await browser.newPage()
    // Every action waits as long as the waits do: playwright's 30 s default ran out at load 25.
    page.setDefaultTimeout(ACTION_WAIT)
    await page.setViewport({ width: 1200, height: 700 })
    page.on('pageerror', err => { problems.push(err instanceof Error ? err.message : String(err)) })
    page.on('response', res => { if (res.status() >= 400) problems.push(`${res.status()} ${res.request().method()} ${new URL(res.url()).pathname}`) })
  }, 180_000)
  afterAll(async () => {
    await browser?.close()
    await mesh?.stop()
  })

  const text = async (selector: string): Promise<string | undefined> => await page.$eval(selector, el => el.textContent ?? '').catch(() => undefined)
  const attr = async (selector: string, name: string): Promise<string | undefined> => await page.$eval(selector, (el, n) => el.getAttribute(n) ?? '', name).catch(() => undefined)

  it('signs in by keyboard and shows a transfer run to 100 % and succeeded, live', async () => {
    await page.goto(`${mesh.ready.apiUrl}/ui`)
    await page.waitForSelector('#token', { timeout: WAIT })
    await page.type('#token', mesh.ready.apiToken)
    await page.keyboard.press('Enter')
    await mesh.until(async () => (await text('main h1')) === 'Transfers', WAIT, 'the transfers page')
    await writeFile(join(mesh.volume('store-1'), 'a.bin'), randomBytes(16 * MiB))
    const t = await mesh.submit('agent://store-1/vol/a.bin', 'agent://fast-1/vol/a.bin')
    await mesh.until(async () => (await text(`tr[data-transfer="${t.id}"] [data-state]`)) === 'succeeded', WAIT, 'the transfer succeeded on the page')
    expect(await text(`tr[data-transfer="${t.id}"] [data-percent]`)).toBe('100 %')
    await page.screenshot({ path: join(ARTIFACTS, 'transfers.png') })
  })

  it('shows a distribution\'s piece map while it runs', async () => {
    await writeFile(join(mesh.volume('store-1'), 'swarm.bin'), randomBytes(16 * MiB))
    const created = await mesh.api('POST', '/v1/transfers', { source: 'agent://store-1/vol/swarm.bin', destinations: ['agent://fast-1/vol/swarm.bin', 'agent://slow-1/vol/swarm.bin'] })
    const id = (created.body as { id: string }).id
    await page.goto(`${mesh.ready.apiUrl}/ui#/transfers/${id}`)
    const strip = (agent: string): string => `table.piece-map tr[data-participant="${agent}"] canvas`
    await page.waitForSelector(strip('slow-1'), { timeout: WAIT })
    expect(await attr(strip('slow-1'), 'data-pieces')).toBe('4')
    await mesh.until(async () => (await text('.facts [data-state]')) === 'active' && Number(await attr(strip('fast-1'), 'data-have')) > 0, WAIT, 'pieces arriving while it runs')
    await page.screenshot({ path: join(ARTIFACTS, 'swarm.png') })
    // Its end is the chromium test's; here, what Firefox draws while it runs is the point.
    expect(problems).toEqual([])
  })
})
