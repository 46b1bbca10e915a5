/** protocols/: the plug-in contract and the built-in plug-ins. Imports only mesh/. */
export type {
  Capabilities, ObjectVersion, StatResult, OpOptions, ReadOptions, WriteOptions, Writer, WriteAtOptions, WriterAt, Entry, ProtocolPlugin
} from './contract.ts'
export { agent } from './agent.ts'
export type { AgentPeer, AgentPluginOptions } from './agent.ts'
export { file } from './file.ts'
export type { FileOptions } from './file.ts'
export { resolveVolumePath, parseFileUrl, resolveIn } from './volumes.ts'
export type { Volume, ResolveOptions } from './volumes.ts'
export { random, randomStream, randomBytes, randomDigest, parseSize, parseRandomUrl } from './random.ts'
export { nullSink } from './null.ts'
export type { NullPlugin, NullCounters } from './null.ts'
export { http, https } from './http.ts'
export type { HttpOptions } from './http.ts'
export { loadPlugins, validatePlugin } from './load.ts'
export type { PluginSpec } from './load.ts'
export { canResumeWrites } from './util.ts'
export { partialName } from './file-partial.ts'
