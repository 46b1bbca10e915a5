/**
 * node scripts/bench-profile.ts FILE.cpuprofile [--top 25]
 *
 * Summarizes a V8 CPU profile (from `node --cpu-prof`, or bench:transfer
 * --profile DIR): self time by function and by package, so "where the time
 * goes" is read from the profile rather than guessed.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } })
const top = Number(values.top)

function where (url: string): string {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (m !== null) return m[1]
  if (url === '') return '(native/vm)'
  if (url.startsWith('node:')) return url
  const own = /\/(mesh|protocols|agent|coordinator|cli|scripts)\/[^/]+$/.exec(url)
  return own !== null ? own[0].slice(1) : url
}

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const self = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0))
  const total = [...self.values()].reduce((a, b) => a + b, 0)
  const byFunction = new Map<string, number>()
  const byPackage = new Map<string, number>()
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = (byId.get(id) as ProfileNode).callFrame
    const key = `${functionName === '' ? '(anonymous)' : functionName}  ${where(url)}:${lineNumber + 1}`
    byFunction.set(key, (byFunction.get(key) ?? 0) + us)
    byPackage.set(where(url), (byPackage.get(where(url)) ?? 0) + us)
  }
  // Inclusive time: each sample counts once for every distinct function on its stack.
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const label = (n: ProfileNode): string => `${n.callFrame.functionName === '' ? '(anonymous)' : n.callFrame.functionName}  ${where(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`
  const inclusive = new Map<string, number>()
  for (const [id, us] of self) {
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) seen.add(label(byId.get(at) as ProfileNode))
    for (const k of seen) inclusive.set(k, (inclusive.get(k) ?? 0) + us)
  }
  const pct = (us: number): string => `${(100 * us / total).toFixed(1).padStart(5)}%`
  process.stdout.write(`${file}: ${(total / 1e6).toFixed(2)} s sampled\n  by package:\n`)
  for (const [k, us] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 12)) process.stdout.write(`  ${pct(us)}  ${k}\n`)
  process.stdout.write('  by function (self time):\n')
  for (const [k, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${pct(us)}  ${k}\n`)
  process.stdout.write('  by function (inclusive time):\n')
  for (const [k, us] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${pct(us)}  ${k}\n`)
}
