import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { StaccatoError } from '../../mesh/index.ts'
import { PgTransferStore } from '../../coordinator/store-pg.ts'
import { TokenStore } from '../../coordinator/tokens.ts'
import { postgresMissing, startPostgres } from '../helpers/postgres.ts'
import type { Postgres } from '../helpers/postgres.ts'
import { transferInput } from './helpers.ts'

const missing = postgresMissing()
// CI installs postgresql (.ci/run): there a missing server is a failure, not a skip.
if (missing !== undefined && process.env.CI === 'true') throw new Error(missing)

const tenant = 'default'

/** Bounded polling of a condition the server's restart makes true. */
async function until<T> (what: string, get: () => Promise<T | undefined>, tries = 1200): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await get().catch(() => undefined)
    if (value !== undefined) return value
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`gave up waiting: ${what}`)
}

describe.skipIf(missing !== undefined)(missing === undefined ? 'PostgreSQL store: the server SIGKILLed and restarted' : `PostgreSQL store: server restart (skipped: ${missing})`, () => {
  let server: Postgres
  beforeAll(async () => { server = await startPostgres() }, 120_000)
  afterAll(async () => { await server?.stop() })

  it('refuses writes as unavailable while the server is down, keeps every acknowledged write, and follows other writers again once it is back', async () => {
    const url = await server.freshDatabase()
    const a = await PgTransferStore.open(url)
    const b = await PgTransferStore.open(url)
    const tokensB = await TokenStore.over(b.tokenRecords())
    const tokensA = await TokenStore.over(a.tokenRecords())
    try {
      const acknowledged: string[] = []
      const refused: unknown[] = []
      // Writes keep going while the server dies: some commit, some fail (possibly mid-commit); none may crash the process.
      let stop = false
      const writer = (async () => {
        for (let i = 0; i < 100_000 && !stop; i++) {
          await a.create(transferInput('src', 'dst', `w${i}`), { tenant }).then(r => { acknowledged.push(r.record.id) }, err => { refused.push(err) })
          if (refused.length > 0) await new Promise(resolve => setTimeout(resolve, 20))
        }
      })()
      await until('some writes acknowledged', async () => acknowledged.length >= 20 ? true : undefined)
      await server.kill()
      await until('writes refused', async () => refused.length > 0 ? true : undefined)
      stop = true
      await writer
      for (const err of refused) {
        expect(err).toBeInstanceOf(StaccatoError)
        expect((err as StaccatoError).code).toBe('unavailable')
      }
      await expect(a.create(transferInput('src', 'dst', 'down'), { tenant })).rejects.toMatchObject({ code: 'unavailable' })
      expect(() => a.list({ limit: 10 })).not.toThrow()

      await server.restart()
      const after = await until('a write to succeed once the server is back', async () => (await a.create(transferInput('src', 'dst', 'after'), { tenant })).record.id)
      // B's listener was reopened: it hears of A's writes made after the restart.
      await until('the other store to see a write made after the restart', async () => b.get(after) !== undefined ? true : undefined)
      const { token, record } = await tokensA.create({ role: 'reader', tenant })
      await until('the other store to know a token made after the restart', async () => tokensB.authenticate(token) !== undefined ? true : undefined)
      await tokensA.revoke(record.id)
      await until('the other store to refuse it once revoked', async () => tokensB.authenticate(token) === undefined ? true : undefined)

      // Nothing acknowledged is lost: in memory here, and in the database (a store opened now).
      for (const id of acknowledged) expect(a.get(id)?.id).toBe(id)
      const fresh = await PgTransferStore.open(url)
      try {
        for (const id of [...acknowledged, after]) expect(fresh.get(id)?.id).toBe(id)
        // Memory follows the database after recovery: no transfer here that the database lacks.
        expect(a.size).toBe(fresh.size)
      } finally {
        await fresh.close()
      }
    } finally {
      await tokensA.close()
      await tokensB.close()
      await a.close()
      await b.close()
    }
  }, 300_000)
})
