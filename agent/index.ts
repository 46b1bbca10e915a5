/** agent/: control client, executor, data server, journal, rate limits. Imports mesh/ and protocols/. */
export { startAgent, AGENT_VERSION } from './agent.ts'
export type { Agent, AgentConfig, AgentSeams, VolumeConfig } from './agent.ts'
export { TokenBucket } from './rate-limit.ts'
export type { AgentCounters } from './counters.ts'
