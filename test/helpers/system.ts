// How the tests find the system packages they need; one copy, in cli/ beside the PostgreSQL cluster helper that needs it too.
export { executable } from '../../cli/index.ts'
