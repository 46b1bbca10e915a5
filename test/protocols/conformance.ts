import { afterAll, describe } from 'vitest'
import { NotFoundError } from '../../mesh/index.ts'
import type { ProtocolPlugin } from '../../protocols/index.ts'
import { describeLarge } from './conformance-large.ts'
import { describeReads } from './conformance-read.ts'
import { describeWrites } from './conformance-write.ts'
import { describeWritesAt } from './conformance-write-at.ts'
import { collect } from './support.ts'

/**
 * The shared protocol plug-in conformance suite. A plug-in's test file hands
 * it a setup; the plug-in's capabilities (and what the harness can do) decide
 * which cases run. Object contents are the conformance seed's bytes (see
 * support.ts), so every harness creates the same objects.
 */
export interface ConformanceHarness {
  plugin: ProtocolPlugin
  /**
   * URL of object `name`, a relative path such as 'w/a-3.bin'. The object does
   * not exist until seeded or written. Leave out when every URL names an object (random://).
   */
  url?(name: string): URL
  /** Makes object `name` hold sourceBytes(name, size) and returns its URL. Needed for the read cases. */
  seed?(name: string, size: number): Promise<URL>
  /** Replaces seeded object `name` with other bytes of another size (and version). */
  mutate?(name: string): Promise<void>
  /** Bytes of object `name` read without the plug-in, or undefined when absent. Defaults to plugin.stat + read. */
  readBack?(name: string): Promise<Uint8Array | undefined>
  /** Size of the large-object cases (default 128 MiB). */
  largeSize?: number
  /** The plug-in keeps objects in this process's memory, so a large write cannot stay within the memory bound. */
  storesInMemory?: boolean
  teardown?(): Promise<void>
}

export interface Suite {
  h: ConformanceHarness
  plugin: ProtocolPlugin
  /** A fresh object name for each call. */
  name(label: string): string
  readBack(name: string): Promise<Uint8Array | undefined>
  /** Whether readBack works (for write cases). */
  canReadBack: boolean
}

async function readBackThroughPlugin (plugin: ProtocolPlugin, url: URL): Promise<Uint8Array | undefined> {
  try {
    await plugin.stat(url)
  } catch (err) {
    if ((err as { code?: string }).code === new NotFoundError('').code) return undefined
    throw err
  }
  return await collect(plugin.read(url, { offset: 0 }))
}

/**
 * describeConformance('file', async () => ({ plugin, url, seed, … })). Setup
 * runs while the suite is collected (its result decides which cases exist);
 * teardown runs after the last case.
 */
export function describeConformance (title: string, setup: () => Promise<ConformanceHarness>): void {
  describe(`${title} plug-in conformance`, async () => {
    const h = await setup()
    afterAll(async () => {
      await h.teardown?.()
      await h.plugin.close?.()
    })
    let counter = 0
    const { plugin } = h
    const url = h.url?.bind(h)
    const suite: Suite = {
      h,
      plugin,
      name: label => `${label}-${++counter}.bin`,
      readBack: h.readBack?.bind(h) ?? (async name => await readBackThroughPlugin(plugin, url!(name))),
      canReadBack: h.readBack !== undefined || (plugin.capabilities.read && url !== undefined)
    }
    describeReads(suite)
    describeWrites(suite)
    describeWritesAt(suite)
    describeLarge(suite)
  })
}
