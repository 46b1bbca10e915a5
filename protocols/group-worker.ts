import { parentPort } from 'node:worker_threads'
import { renamePartials, writePartials } from './group-io.ts'
import type { GroupRequest } from './group-thread.ts'
import { readPack } from './read-io.ts'

/** The group thread's body: each request's system calls, one request at a time, answered in order. */
parentPort?.on('message', (m: GroupRequest) => {
  try {
    if (m.op === 'read') {
      const out = readPack(m.jobs, m.algorithm)
      // The pack's bytes move to the event loop, not copied.
      parentPort?.postMessage({ id: m.id, out }, [out.bytes.buffer as ArrayBuffer])
      return
    }
    const out = m.op === 'write' ? writePartials(m.jobs, m.bytes) : renamePartials(m.jobs)
    parentPort?.postMessage({ id: m.id, out })
  } catch (err) {
    parentPort?.postMessage({ id: m.id, failed: String(err) })
  }
})
