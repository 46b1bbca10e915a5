// The cluster helper lives in cli/ so that benchmarks can start one too (scripts/ may not import test/).
export { postgresBinDir, postgresMissing, startPostgres } from '../../cli/index.ts'
export type { Postgres } from '../../cli/index.ts'
