import { fileURLToPath } from 'node:url'
import { ESLint } from 'eslint'
import { describe, expect, it } from 'vitest'

// The project's own eslint.config.js, run on code placed (in memory) at paths inside the units.
const root = fileURLToPath(new URL('../../', import.meta.url))
const eslint = new ESLint({ cwd: root })

async function houseRuleErrors (filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath, warnIgnored: true })
  return result.messages
    .filter(m => m.ruleId === 'staccato/unit-boundaries' || m.ruleId === 'import-x/no-cycle' || m.ruleId === 'no-restricted-syntax')
    .map(m => `${m.ruleId}: ${m.message}`)
}

describe('house rules in eslint.config.js', () => {
  it.each([
    ['a deep import into another unit', 'agent/x.ts', "export { StaccatoError } from '../mesh/errors.ts'", /through its entry, mesh\/index\.ts/],
    ['a deep import from a nested folder', 'agent/swarm/x.ts', "import { file } from '../../protocols/file.ts'\nexport { file }", /through its entry, protocols\/index\.ts/],
    ['protocols importing the coordinator', 'protocols/x.ts', "export { startCoordinator } from '../coordinator/index.ts'", /protocols\/ may not import coordinator\//],
    ['mesh importing another unit', 'mesh/x.ts', "export { file } from '../protocols/index.ts'", /mesh\/ may not import protocols\/ \(it may import: no other unit\)/],
    ['the coordinator importing the agent', 'coordinator/api/x.ts', "export { startAgent } from '../../agent/index.ts'", /coordinator\/ may not import agent\//],
    ['the agent importing the coordinator, lazily', 'agent/x.ts', "export const load = async (): Promise<unknown> => await import('../coordinator/index.ts')", /agent\/ may not import coordinator\//],
    ['a type-only deep import', 'cli/x.ts', "import type { TransferRecord } from '../coordinator/model.ts'\nexport type { TransferRecord }", /through its entry, coordinator\/index\.ts/],
    ['a unit importing test code', 'agent/x.ts', "export { MeshHarness } from '../test/helpers/mesh.ts'", /agent\/ may not import test\//],
    ['a script reaching inside cli/', 'scripts/x.ts', "export { freePort } from '../cli/processes.ts'", /through its entry, cli\/index\.ts/],
    ['a test reaching inside a unit it does not test', 'test/agent/x.test.ts', "export { TransferStore } from '../../coordinator/store.ts'", /through its entry, coordinator\/index\.ts/],
    ['an entry that exports everything a file exports', 'mesh/index.ts', "export * from './errors.ts'", /list the unit's exports by name/]
  ])('fails %s', async (_what, filePath, code, message) => {
    const errors = await houseRuleErrors(filePath, code)
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatch(message)
  })

  it('fails an import cycle', async () => {
    // The fixtures folder is ignored by the project's config so that `npm run lint` passes; lint it explicitly.
    const [result] = await new ESLint({ cwd: root, ignore: false }).lintFiles(['test/lint/fixtures/cycle-a.ts'])
    expect(result.messages.filter(m => m.ruleId === 'import-x/no-cycle').map(m => m.message)).toEqual(['Dependency cycle detected'])
  })

  it('fails a cycle of type-only imports in the library units', async () => {
    // The fixtures sit outside the units: lint them with the project's config plus the rule the units get.
    const config = await eslint.calculateConfigForFile('agent/swarm/x.ts') as { rules: Record<string, unknown> }
    expect(config.rules['staccato/no-type-cycle']).toEqual([2])
    const linter = new ESLint({ cwd: root, ignore: false, overrideConfig: { files: ['test/lint/fixtures/**'], rules: { 'staccato/no-type-cycle': 'error' } } })
    const [result] = await linter.lintFiles(['test/lint/fixtures/type-cycle-a.ts'])
    expect(result.messages.map(m => `${m.ruleId}: ${m.message}`)).toEqual(['staccato/no-type-cycle: import cycle: ./type-cycle-b.ts leads back to this file (type-only imports count too)'])
  })

  it.each([
    ['a unit importing its own files', 'agent/swarm/x.ts', "export { Journal } from '../journal.ts'\nexport { Bitfield } from './bitfield.ts'"],
    ['the agent importing mesh/ and protocols/ entries', 'agent/x.ts', "export { StaccatoError } from '../mesh/index.ts'\nexport { file } from '../protocols/index.ts'\nexport { readFile } from 'node:fs/promises'"],
    ['protocols importing mesh/', 'protocols/x.ts', "export { StaccatoError } from '../mesh/index.ts'"],
    ['cli importing every entry', 'cli/commands/x.ts', "export { startCoordinator } from '../../coordinator/index.ts'\nexport { startAgent } from '../../agent/index.ts'\nexport { file } from '../../protocols/index.ts'"],
    ['a script using the cli entry', 'scripts/x.ts', "export { freePort } from '../cli/index.ts'\nexport { note } from './bench-util.ts'"],
    ['a test reaching inside the unit it tests', 'test/coordinator/x.test.ts', "export { TransferStore } from '../../coordinator/store.ts'\nexport { StaccatoError } from '../../mesh/index.ts'\nexport { tempStore } from './helpers.ts'"],
    ["the events tests reaching inside the coordinator", 'test/events/x.test.ts', "export { TransferStore } from '../../coordinator/store.ts'"]
  ])('allows %s', async (_what, filePath, code) => {
    expect(await houseRuleErrors(filePath, code)).toEqual([])
  })
})
