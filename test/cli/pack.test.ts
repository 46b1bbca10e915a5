import { describe, it, expect } from 'vitest'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { dirname, join, normalize } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

describe('npm pack', () => {
  it('ships what runs and nothing of the tests or benchmarks, and every shipped import resolves inside the package', async () => {
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, timeout: 60_000 })
    const files = new Set((JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0].files.map(f => f.path))
    expect([...files].filter(f => f.startsWith('test/') || /^scripts\/(?!install-(agent|coordinator|lib)\.sh$)/.test(f) || /(^|\/)[^/]*\.test\.ts$/.test(f))).toEqual([])
    for (const needed of ['package.json', 'README.md', 'cli/staccato.mjs', 'cli/bin.ts', 'scripts/install-agent.sh', 'scripts/install-coordinator.sh', 'scripts/install-lib.sh', 'docs/operators.md', 'agent/index.ts', 'coordinator/index.ts', 'mesh/index.ts', 'protocols/index.ts']) {
      expect(files, needed).toContain(needed)
    }
    const missing: string[] = []
    for (const file of [...files].filter(f => /\.(ts|mjs)$/.test(f))) {
      const text = await readFile(join(ROOT, file), 'utf8')
      for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = normalize(join(dirname(file), m[1]))
        if (!files.has(target)) missing.push(`${file} → ${target}`)
      }
    }
    expect(missing).toEqual([])
  })
})
