import { accessSync, constants } from 'node:fs'

/** Whether `path` is a file this process may run: how the tests find the system packages they need. */
export function executable (path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}
