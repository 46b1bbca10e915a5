import { AgentOfflineError } from '../../mesh/index.ts'
import type { CallMethod, CastMethod, CoordinatorToAgent, Params, Result } from '../../mesh/index.ts'
import type { AgentControl } from '../../coordinator/agent-sessions.ts'

export interface Sent { agent: string, method: string, params: unknown }

/**
 * Connected agents as the dispatcher and the distribution manager see them
 * (Kraken's fake peers): which are online, what was called and cast to each,
 * and what a call answers (`answer`, replaceable per test).
 */
export class FakeAgents implements AgentControl {
  readonly online = new Set<string>()
  readonly calls: Sent[] = []
  readonly casts: Sent[] = []
  answer: (agent: string, method: string, params: unknown) => Promise<unknown> = async (_agent, method) => {
    if (method === 'execute') return { accepted: true }
    if (method === 'swarmJoin') return { joined: true }
    throw new Error(`FakeAgents: no answer for ${method}`)
  }

  readonly #lifecycles = new Map<string, Promise<unknown>>()

  isOnline (agent: string): boolean {
    return this.online.has(agent)
  }

  async call<M extends CallMethod<CoordinatorToAgent>> (agent: string, method: M, params: Params<CoordinatorToAgent, M>): Promise<Result<CoordinatorToAgent, M>> {
    if (!this.online.has(agent)) throw new AgentOfflineError(`agent '${agent}' is not connected`)
    this.calls.push({ agent, method, params })
    // The fake's answers are the test's to get right; the real channel checks them against the reply schema.
    return await this.answer(agent, method, params) as Result<CoordinatorToAgent, M>
  }

  cast<M extends CastMethod<CoordinatorToAgent>> (agent: string, method: M, params: Params<CoordinatorToAgent, M>): void {
    if (this.online.has(agent)) this.casts.push({ agent, method, params })
  }

  exclusive<T> (agent: string, fn: () => Promise<T>): Promise<T> {
    const ran = (this.#lifecycles.get(agent) ?? Promise.resolve()).then(fn)
    this.#lifecycles.set(agent, ran.then(() => undefined, () => undefined))
    return ran
  }

  sentTo (agent: string, method: string): unknown[] {
    return [...this.calls, ...this.casts].filter(s => s.agent === agent && s.method === method).map(s => s.params)
  }
}

/** Lets pending I/O and promises run: a bounded number of event-loop turns. */
export async function settle (turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise(resolve => setImmediate(resolve))
}

/**
 * Waits until `check` holds, looking again every few ms (store writes are
 * synced to disk, which takes real time under load); gives up after `tries`.
 */
export async function until (check: () => boolean, what: string, tries = 2000): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (check()) return
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  if (!check()) throw new Error(`never happened: ${what}`)
}
