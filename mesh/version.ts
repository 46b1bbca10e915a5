import { readFileSync } from 'node:fs'

/** The package's version, read from package.json so that one number is bumped (CLI, agent, OpenAPI document). */
export const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version
