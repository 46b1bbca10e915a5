import { configDefaults, defineConfig } from 'vitest/config'

// Coordinator replicas on PostgreSQL, killed and restarted: `npm run test:failover` runs these three times in a
// row (and .ci/run runs that script), so `npm test` leaves them out and stays near ten minutes on two cores.
const FAILOVER = ['test/e2e/failover.test.ts', 'test/e2e/replicas-pg.test.ts']

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: process.env.STACCATO_TEST_FAILOVER === '1' ? configDefaults.exclude : [...configDefaults.exclude, ...FAILOVER],
    // Integration and e2e tests start real processes; 2 cores cannot run many at once.
    maxWorkers: 2,
    // A bound against a hung test, not a speed check: every wait inside a test
    // waits on its own condition with its own deadline. Under a parallel CPU
    // load an agent process takes 5-15 s to start (measured at load 12 on 2
    // cores), so a test that starts five of them needs minutes, not one.
    testTimeout: 240_000,
    hookTimeout: 180_000,
    reporters: ['default']
  }
})
