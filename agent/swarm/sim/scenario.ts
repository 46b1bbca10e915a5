import { normal } from './random.ts'

/** One simulated host: capacities in bytes per second, times in ms of virtual time. */
export interface HostSpec {
  up: number
  down: number
  /** This host's share of the one-way latency of each of its links (a link's latency is the sum of its ends'). */
  latencyMs: number
  /** When it comes online (a late joiner when > 0). */
  joinAt: number
  /** When it goes away mid-way, and when it comes back (an agent restart: it resumes from its journal). */
  leaveAt?: number
  returnAt?: number
  /** It serves every piece with a byte flipped: its peers must detect and drop it. */
  corrupt: boolean
}

export const SCENARIOS = ['uniform', 'bimodal', 'longtail', 'churn', 'slow', 'validate'] as const
export type ScenarioName = typeof SCENARIOS[number]

export const SCENARIO_NOTES: Record<ScenarioName, string> = {
  uniform: 'every host up = down = rate',
  bimodal: '20 % storage hosts (up = down = 4·rate), 80 % compute hosts (up = rate/2, down = 2·rate)',
  longtail: 'up = rate·e^(0.8·z) clamped to [rate/20, 20·rate], down = max(up, rate)',
  churn: 'bimodal + 10 % churn (half join late, half leave and come back) + 1 % corrupt peers',
  slow: 'uniform + 5 % slow uploaders (rate/10) + 1 % corrupt peers',
  validate: 'uploads capped at rate, downloads not, no latency: the caps of bench:swarm on loopback'
}

/**
 * The seed and `n` destinations of a scenario. `rate` is the typical host's
 * capacity; `size` sets the time scale of churn (a host leaves and joins
 * within the first half of F/rate).
 */
export function scenarioHosts (name: ScenarioName, n: number, rate: number, size: number, random: () => number): { seed: HostSpec, hosts: HostSpec[] } {
  const scaleMs = (size / rate) * 1000
  // Within a data centre a one-way hop costs tens to hundreds of microseconds.
  const latency = (): number => name === 'validate' ? 0 : 0.05 + 0.2 * random()
  const host = (up: number, down: number): HostSpec => ({ up, down, latencyMs: latency(), joinAt: 0, corrupt: false })
  const seed = host(rate, rate)
  const hosts: HostSpec[] = []
  for (let i = 0; i < n; i++) {
    switch (name) {
      case 'validate':
        // bench:swarm caps uploads only.
        hosts.push(host(rate, Infinity))
        break
      case 'uniform':
      case 'slow':
        hosts.push(host(rate, rate))
        break
      case 'bimodal':
      case 'churn':
        hosts.push(random() < 0.2 ? host(4 * rate, 4 * rate) : host(rate / 2, 2 * rate))
        break
      case 'longtail': {
        const up = Math.min(20 * rate, Math.max(rate / 20, rate * Math.exp(0.8 * normal(random))))
        hosts.push(host(up, Math.max(up, rate)))
        break
      }
    }
  }
  if (name === 'slow') {
    for (const h of pick(hosts, 0.05, random)) h.up = rate / 10
  }
  if (name === 'slow' || name === 'churn') {
    for (const h of pick(hosts, 0.01, random)) h.corrupt = true
  }
  if (name === 'churn') {
    const churned = pick(hosts.filter(h => !h.corrupt), 0.1 * n / Math.max(1, hosts.length), random)
    churned.forEach((h, i) => {
      if (i % 2 === 0) {
        h.joinAt = random() * 0.5 * scaleMs
      } else {
        h.leaveAt = (0.1 + 0.4 * random()) * scaleMs
        h.returnAt = h.leaveAt + 0.25 * scaleMs
      }
    })
  }
  return { seed, hosts }
}

/** About `share` of `items`, each taken with that probability (at least one when share > 0 and any exist). */
function pick<T> (items: T[], share: number, random: () => number): T[] {
  const taken = items.filter(() => random() < share)
  if (taken.length === 0 && share > 0 && items.length > 0) taken.push(items[Math.floor(random() * items.length)])
  return taken
}
