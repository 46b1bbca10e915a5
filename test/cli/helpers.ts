import { spawn } from 'node:child_process'
import { BIN } from '../../cli/processes.ts'

export interface CliResult { code: number | null, stdout: string, stderr: string }

/**
 * Runs `staccato <args>` as its own process, as an operator would, with a
 * clean environment for the client settings (no real ~/.config is read).
 */
export async function runCli (args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 180_000): Promise<CliResult> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, STACCATO_URL: undefined, STACCATO_TOKEN: undefined, STACCATO_CONFIG: undefined, ...env }
  for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k]
  const child = spawn(process.execPath, [BIN, ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const code = await new Promise<number | null>(resolve => child.once('close', c => resolve(c)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

/** `[Service]` → { Key: [values…] }: what systemd reads, repeated keys kept in order. */
export function parseUnit (text: string): Record<string, Record<string, string[]>> {
  const sections: Record<string, Record<string, string[]>> = {}
  let current: Record<string, string[]> | undefined
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue
    const section = /^\[(.+)\]$/.exec(line)
    if (section !== null) { current = sections[section[1]] = {}; continue }
    const eq = line.indexOf('=')
    if (current === undefined || eq < 1) throw new Error(`not a unit line: ${line}`)
    ;(current[line.slice(0, eq)] ??= []).push(line.slice(eq + 1))
  }
  return sections
}
