// The house rules of docs/ARCHITECTURE.md ("Units"), kept by `npm run lint`.
// Resolving each relative import against the importing file (rather than
// matching import strings with globs) makes the rule independent of how deep
// a file sits inside its unit.
import { dirname, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)))

/** The library units, and the units each may import (through its index.ts). */
const LIBRARY = {
  mesh: [],
  protocols: ['mesh'],
  coordinator: ['mesh', 'protocols'],
  agent: ['mesh', 'protocols'],
  cli: ['mesh', 'protocols', 'coordinator', 'agent']
}
const CONSUMERS = {
  scripts: ['mesh', 'protocols', 'coordinator', 'agent', 'cli'],
  test: ['mesh', 'protocols', 'coordinator', 'agent', 'cli']
}

/**
 * Tests are white-box: a test folder may reach inside the unit it tests.
 * test/events tests the coordinator's events; test/metrics its metrics and
 * API schema; test/e2e and test/security span the library units (they read an
 * agent's journal, a coordinator's token store). cli/ is reached through its
 * entry from everywhere but test/cli.
 */
const TESTS_REACH = {
  agent: ['agent'],
  cli: ['cli'],
  coordinator: ['coordinator'],
  events: ['coordinator'],
  metrics: ['coordinator'],
  mesh: ['mesh'],
  protocols: ['protocols'],
  e2e: ['mesh', 'protocols', 'coordinator', 'agent'],
  security: ['mesh', 'protocols', 'coordinator', 'agent']
}

const UNITS = new Set([...Object.keys(LIBRARY), ...Object.keys(CONSUMERS)])

function place (absPath) {
  const parts = relative(ROOT, absPath).split(sep)
  if (parts[0] === '..' || !UNITS.has(parts[0])) return undefined
  return { unit: parts[0], sub: parts.length > 2 ? parts[1] : undefined, rest: parts.slice(1).join('/') }
}

/** @returns a message, or undefined when `from` may import `to`. */
function verdict (from, to) {
  if (from.unit === to.unit) return undefined
  const allowed = LIBRARY[from.unit] ?? CONSUMERS[from.unit]
  if (!allowed.includes(to.unit)) {
    if (to.unit === 'scripts' || to.unit === 'test') return `${from.unit}/ may not import ${to.unit}/`
    return `${from.unit}/ may not import ${to.unit}/ (it may import: ${allowed.length === 0 ? 'no other unit' : allowed.join(', ')})`
  }
  if (to.rest === 'index.ts') return undefined
  if (from.unit === 'test' && (TESTS_REACH[from.sub] ?? []).includes(to.unit)) return undefined
  return `import ${to.unit}/ through its entry, ${to.unit}/index.ts, not ${to.unit}/${to.rest}`
}

export default {
  meta: {
    type: 'problem',
    docs: { description: 'Units import each other only through index.ts, and only in the allowed direction' },
    schema: []
  },
  create (context) {
    const from = place(context.filename)
    if (from === undefined) return {}
    function check (node, source) {
      if (source === null || source === undefined || source.type !== 'Literal' || typeof source.value !== 'string') return
      if (!source.value.startsWith('.')) return
      const to = place(resolve(dirname(context.filename), source.value))
      if (to === undefined) return
      const message = verdict(from, to)
      if (message !== undefined) context.report({ node: source, message })
    }
    return {
      ImportDeclaration: (node) => check(node, node.source),
      ExportNamedDeclaration: (node) => check(node, node.source),
      ExportAllDeclaration: (node) => check(node, node.source),
      ImportExpression: (node) => check(node, node.source),
      TSImportType: (node) => check(node, node.argument?.type === 'TSLiteralType' ? node.argument.literal : node.argument)
    }
  }
}
