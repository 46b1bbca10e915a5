/** agent/: control client, executor, data server, journal, rate limits. Imports mesh/ and protocols/. */
export { startAgent, AGENT_VERSION } from './agent.ts'
export type { Agent, AgentConfig, AgentSeams, VolumeConfig } from './agent.ts'
export { TokenBucket } from './rate-limit.ts'
export type { AgentCounters } from './counters.ts'
// The swarm simulator (bench:swarm-sim): the swarm's own policy code in virtual time.
export { runScenario } from './swarm/sim/run.ts'
export type { ScenarioFigures, ScenarioRun } from './swarm/sim/run.ts'
export { SCENARIOS, SCENARIO_NOTES } from './swarm/sim/scenario.ts'
export type { ScenarioName } from './swarm/sim/scenario.ts'
export { MAX_OUTSTANDING } from './swarm/session.ts'
// bench:transfer reports how many ranges its multi-stream row was split into.
export { MIN_MULTI_STREAM_BYTES, planRanges } from './copy/ranges.ts'
export { DEFAULT_TREE_STREAMS } from './tree/policy.ts'
