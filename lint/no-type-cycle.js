// import-x/no-cycle follows value imports only. A cycle of `import type`
// costs nothing at run time, but it ties the files together all the same
// (DESIGN.md: an import cycle is a bug), so this rule follows every import.
// Files other than the one being linted are read from disk and their
// relative imports found by a pattern: enough for this code base, whose
// imports all name a relative file with its extension.
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'

const SPECIFIER = /\bfrom\s+'(\.{1,2}\/[^']+)'|\bimport\s*\(\s*'(\.{1,2}\/[^']+)'\s*\)|^import\s+'(\.{1,2}\/[^']+)'/gm

function importsOf (file, cache) {
  let deps = cache.get(file)
  if (deps !== undefined) return deps
  deps = []
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    // Not a file we can read (a package, a JSON file that is gone): it imports nothing of ours.
  }
  for (const m of text.matchAll(SPECIFIER)) deps.push(resolve(dirname(file), m[1] ?? m[2] ?? m[3]))
  cache.set(file, deps)
  return deps
}

/** Whether `start` leads back to `target` through imports read from disk; every file is visited once. */
function reaches (start, target, cache) {
  const seen = new Set([start])
  const stack = [start]
  while (stack.length > 0) {
    const file = stack.pop()
    if (file === target) return true
    for (const dep of importsOf(file, cache)) {
      if (!seen.has(dep)) {
        seen.add(dep)
        stack.push(dep)
      }
    }
  }
  return false
}

export default {
  meta: {
    type: 'problem',
    docs: { description: 'No import cycles, type-only imports included' },
    schema: []
  },
  create (context) {
    const self = context.filename
    // One lint run reads each file once; a new run (or an editor's next pass) starts afresh.
    const cache = new Map()
    function check (source) {
      if (source?.type !== 'Literal' || typeof source.value !== 'string' || !source.value.startsWith('.')) return
      const dep = resolve(dirname(self), source.value)
      if (dep !== self && reaches(dep, self, cache)) context.report({ node: source, message: `import cycle: ${source.value} leads back to this file (type-only imports count too)` })
    }
    return {
      ImportDeclaration: node => check(node.source),
      ExportNamedDeclaration: node => check(node.source),
      ExportAllDeclaration: node => check(node.source),
      ImportExpression: node => check(node.source)
    }
  }
}
