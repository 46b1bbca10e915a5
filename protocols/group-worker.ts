import { parentPort } from 'node:worker_threads'
import { renamePartials, writePartials } from './group-io.ts'
import type { GroupRequest } from './group-thread.ts'

/** The group thread's body: each request's system calls, one request at a time, answered in order. */
parentPort?.on('message', (m: GroupRequest) => {
  try {
    const out = m.op === 'write' ? writePartials(m.jobs, m.bytes) : renamePartials(m.jobs)
    parentPort?.postMessage({ id: m.id, out })
  } catch (err) {
    parentPort?.postMessage({ id: m.id, failed: String(err) })
  }
})
