import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import { importX, createNodeResolver } from 'eslint-plugin-import-x'
import unitBoundaries from './lint/unit-boundaries.js'
import noTypeCycle from './lint/no-type-cycle.js'

export default tseslint.config(
  { ignores: ['node_modules/**', '.staccato/**', 'coverage/**', 'test/lint/fixtures/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }]
    }
  },
  {
    // The house rules (docs/ARCHITECTURE.md): unit boundaries and no import cycles.
    files: ['**/*.ts', '**/*.js', '**/*.mjs'],
    plugins: { 'import-x': importX, staccato: { rules: { 'unit-boundaries': unitBoundaries, 'no-type-cycle': noTypeCycle } } },
    settings: {
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.mjs', '.json'] })],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/extensions': ['.ts', '.js', '.mjs']
    },
    rules: {
      'staccato/unit-boundaries': 'error',
      'import-x/no-cycle': 'error'
    }
  },
  {
    // The library units have no import cycle of any kind; test helpers may still share types both ways.
    files: ['{mesh,protocols,coordinator,agent,cli}/**/*.ts'],
    rules: { 'staccato/no-type-cycle': 'error' }
  },
  {
    // An entry lists what its unit offers by name: `export *` would publish whatever a file happens to export.
    files: ['{mesh,protocols,coordinator,agent,cli}/index.ts'],
    rules: {
      'no-restricted-syntax': ['error', { selector: 'ExportAllDeclaration', message: "list the unit's exports by name, not with export *" }]
    }
  }
)
