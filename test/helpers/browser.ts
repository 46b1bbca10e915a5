import { existsSync } from 'node:fs'

/** Debian's chromium (installed by .ci/run); STACCATO_CHROMIUM points elsewhere. */
export const CHROMIUM = process.env.STACCATO_CHROMIUM ?? '/usr/bin/chromium'

/**
 * Whether the browser tests can run. In CI a missing browser is a failure,
 * not a skip, so the dashboard can never go untested there unnoticed;
 * elsewhere (a fresh machine running npm test) they are skipped with the reason.
 */
export function browserAvailable (): boolean {
  if (existsSync(CHROMIUM)) return true
  if (process.env.CI === 'true') return true
  process.stderr.write(`dashboard browser tests skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set STACCATO_CHROMIUM)\n`)
  return false
}

export function requireBrowser (): void {
  if (!existsSync(CHROMIUM)) throw new Error(`CI=true and no chromium at ${CHROMIUM}: the dashboard's browser tests cannot run (.ci/run installs Debian's chromium)`)
}

/** Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core; STACCATO_FIREFOX points elsewhere. */
export const FIREFOX = process.env.STACCATO_FIREFOX ?? '/usr/bin/firefox-esr'

/** As browserAvailable, for Firefox: a failure under CI=true, a skip with the reason elsewhere. */
export function firefoxAvailable (): boolean {
  if (existsSync(FIREFOX)) return true
  if (process.env.CI === 'true') return true
  process.stderr.write(`dashboard Firefox tests skipped: no firefox at ${FIREFOX} (apt-get install firefox-esr, or set STACCATO_FIREFOX)\n`)
  return false
}

export function requireFirefox (): void {
  if (!existsSync(FIREFOX)) throw new Error(`CI=true and no firefox at ${FIREFOX}: the dashboard's Firefox tests cannot run (install Debian's firefox-esr)`)
}
