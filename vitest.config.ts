import { configDefaults, defineConfig } from 'vitest/config'

// Two fault-injection suites run apart from `npm test`, which stays near its ten-minute budget on two cores;
// .ci/run runs both after it. `npm run test:failover` (STACCATO_SUITE=failover): coordinator replicas on
// PostgreSQL, killed and restarted, three rounds in a row. `npm run test:crash` (STACCATO_SUITE=crash): agents
// and a coordinator SIGKILLed mid-transfer, mid-tree and mid-distribution, then restarted to resume.
const SUITES = {
  failover: ['test/e2e/failover.test.ts', 'test/e2e/replicas-pg.test.ts', 'test/coordinator/leader-pg.test.ts', 'test/coordinator/store-pg-restart.test.ts'],
  crash: ['test/e2e/*crash*.test.ts', 'test/e2e/swarm-restart.test.ts']
}
// leader-pg and store-pg-restart are quick: they stay in `npm test` too.
const ONLY_IN_SUITES = ['test/e2e/failover.test.ts', 'test/e2e/replicas-pg.test.ts', ...SUITES.crash]

const suite = process.env.STACCATO_SUITE
if (suite !== undefined && !(suite in SUITES)) throw new Error(`STACCATO_SUITE=${suite}: expected one of ${Object.keys(SUITES).join(', ')}`)

export default defineConfig({
  test: {
    include: suite === undefined ? ['test/**/*.test.ts'] : SUITES[suite as keyof typeof SUITES],
    exclude: suite === undefined ? [...configDefaults.exclude, ...ONLY_IN_SUITES] : configDefaults.exclude,
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
