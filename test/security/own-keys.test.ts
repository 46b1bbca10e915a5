import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { StaccatoError, fromErrorInfo } from '../../mesh/index.ts'
import { parseTenantPolicy } from '../../coordinator/index.ts'
import { errorHandler } from '../../coordinator/api/errors.ts'
import { countBytes, newCounters } from '../../agent/counters.ts'
import { parseSize } from '../../protocols/index.ts'
import { tempStore } from '../coordinator/helpers.ts'

/**
 * Names chosen by users, peers or plug-in authors, looked up in plain
 * objects: `constructor`, `toString` and `__proto__` must be looked up as
 * the names they are, never found on Object.prototype.
 */
describe('names that are also Object.prototype properties', () => {
  it('a tenants file keeps a rule for __proto__ or constructor as a rule, and no other tenant sees it', () => {
    const policy = parseTenantPolicy(JSON.parse('{"tenants": {"__proto__": {"agents": ["a"]}, "constructor": {"agents": ["b"]}, "*": {"agents": []}}}'))
    expect(Object.keys(policy).sort()).toEqual(['*', '__proto__', 'constructor'])
    expect(Object.getPrototypeOf(policy)).toBe(null)
    expect(policy.constructor).toEqual({ agents: ['b'] })
    expect((policy as Record<string, unknown>).agents).toBeUndefined()
  })

  it('a distribution destination on an agent named toString keeps its own progress when another destination reports', async () => {
    const h = await tempStore()
    try {
      const { record } = await h.store.create({ source: 'agent://s/images/a.img', destinations: ['agent://c1/images/a.img', 'agent://toString/images/a.img'] }, { tenant: 'default' })
      await h.store.update(record.id, prev => ({ destinations: prev.destinations?.map(d => ({ ...d, state: 'active' as const })) }), `transfer.${record.id}.destination`, {})
      await h.store.transition(record.id, 'scheduled', {})
      await h.store.transition(record.id, 'active', {})
      await h.store.setProgress(record.id, { bytesDone: 5, bytesTotal: 100, destinations: { c1: 5 } })
      const dests = h.store.get(record.id)?.destinations ?? []
      expect(dests.map(d => [d.agent, d.bytesDone])).toEqual([['c1', 5], ['toString', 0]])
    } finally {
      await h.cleanup()
    }
  })

  it('an error code from a peer named like a prototype property becomes a plain StaccatoError', () => {
    for (const code of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      const err = fromErrorInfo({ code, message: 'odd', retryable: false })
      expect(err, code).toBeInstanceOf(StaccatoError)
      expect({ code: err.code, message: err.message, retryable: err.retryable }).toEqual({ code, message: 'odd', retryable: false })
    }
  })

  it('the REST error handler answers 400 for an unknown code, even one named constructor', async () => {
    const app = Fastify()
    app.setErrorHandler(errorHandler)
    app.get('/x', async () => { throw new StaccatoError('constructor', 'odd', false) })
    const res = await app.inject({ method: 'GET', url: '/x' })
    expect({ status: res.statusCode, body: res.json() }).toEqual({ status: 400, body: { code: 'constructor', message: 'odd' } })
    await app.close()
  })

  it('an agent counts bytes of a plug-in whose scheme is constructor from zero', () => {
    const counters = newCounters()
    countBytes(counters.bytesIn, 'constructor', 10)
    countBytes(counters.bytesIn, 'constructor', 5)
    expect(counters.bytesIn).toEqual({ constructor: 15 })
  })

  it('a size with a unit named like a prototype property is not a byte count', () => {
    for (const text of ['1toString', '1constructor', '1valueOf']) {
      expect(() => parseSize(text), text).toThrow(/is not a byte count/)
    }
  })
})
